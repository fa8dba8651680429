"""Device choice through accelerate: cuda, then mps, then cpu; bf16 autocast on CUDA."""

from __future__ import annotations

import functools

import torch

from vlbench.errors import VLBenchError

__all__ = ["get_accelerator", "describe_device"]


@functools.lru_cache(maxsize=None)
def get_accelerator(device: str = "auto"):
    """One ``accelerate.Accelerator`` per device choice (its state is process-wide)."""
    from accelerate import Accelerator

    if device not in {"auto", "cpu", "cuda", "mps"}:
        raise VLBenchError(f"--device {device!r}: use auto, cpu, cuda or mps.")
    if device == "cuda" and not torch.cuda.is_available():
        raise VLBenchError("--device cuda: no CUDA device is visible; use --device auto or cpu.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VLBenchError("--device mps: MPS is not available on this machine; use --device auto or cpu.")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return Accelerator(cpu=device == "cpu", mixed_precision="bf16" if use_cuda else "no")


def describe_device(device: torch.device) -> str:
    """Human-readable device name for run records."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
