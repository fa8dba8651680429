"""Peak memory of one run: the CUDA allocator's max allocated bytes on GPU; nothing on other devices.

Process RSS is not a run's memory (importing torch and transformers alone is about 1 GB, and it never
shrinks between runs of a sweep), and torch keeps no allocator statistics for CPU tensors, so a run on
CPU records ``peak_bytes: null`` with ``kind: "not_measured"`` rather than a misleading number.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["PeakMemory"]


class PeakMemory:
    """Context manager measuring peak memory in bytes (``.peak``, None when not measured) and what it measured."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device or torch.device("cpu")
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "not_measured"
        self.peak: Optional[int] = None

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "cuda_max_allocated":
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
