"""Peak memory of one run: CUDA max allocated on GPU, else the process's peak RSS sampled during the run."""

from __future__ import annotations

import threading
from typing import Optional

import torch

__all__ = ["PeakMemory"]


class PeakMemory:
    """Context manager measuring peak memory in bytes (``.peak``) and what it measured (``.kind``)."""

    def __init__(self, device: Optional[torch.device] = None, interval: float = 0.05) -> None:
        self.device = device or torch.device("cpu")
        self.interval = interval
        self.peak = 0
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_rss"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while True:
            self.peak = max(self.peak, process.memory_info().rss)
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "cuda_max_allocated":
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
