"""Device and precision: cuda, then mps, then cpu (through accelerate); bf16 autocast where it is native."""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager

import torch

from vlbench.errors import VLBenchError

__all__ = ["get_accelerator", "describe_device", "native_bf16", "resolve_precision", "autocast"]


@functools.lru_cache(maxsize=None)
def get_accelerator(device: str = "auto"):
    """One ``accelerate.Accelerator`` per device choice (its state is process-wide).

    Mixed precision is not handed to accelerate: it is a per-run setting (``training.precision``),
    applied by :func:`autocast` around the training forward pass, so one process can run both.
    """
    from accelerate import Accelerator

    if device not in {"auto", "cpu", "cuda", "mps"}:
        raise VLBenchError(f"--device {device!r}: use auto, cpu, cuda or mps.")
    if device == "cuda" and not torch.cuda.is_available():
        raise VLBenchError("--device cuda: no CUDA device is visible; use --device auto or cpu.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VLBenchError("--device mps: MPS is not available on this machine; use --device auto or cpu.")
    return Accelerator(cpu=device == "cpu", mixed_precision="no")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (CUDA from Ampere; CPUs with AVX512-BF16 or AMX).

    Elsewhere bf16 is emulated and slower than fp32, so ``auto`` keeps fp32 there.
    """
    if device.type == "cuda":
        try:  # newer torch counts emulated bf16 (pre-Ampere) as supported unless told not to
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a run: ``auto`` picks bf16 where :func:`native_bf16` holds."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and device.type == "mps":
        raise VLBenchError("training.precision bf16: autocast to bf16 is not supported on mps; use fp32 or auto.")
    return requested


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context the training forward pass runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe_device(device: torch.device) -> str:
    """Human-readable device name for run records."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
