"""Device and precision: cuda, then mps, then cpu (through accelerate); autocast, TF32 and determinism switches."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from typing import Any, ContextManager, Iterator, Optional

import torch

from vlbench.errors import VLBenchError

__all__ = [
    "get_accelerator",
    "describe_device",
    "native_bf16",
    "resolve_precision",
    "autocast",
    "grad_scaler",
    "tf32_matmuls",
    "set_deterministic",
    "release",
    "free_device_memory",
]

# cuBLAS needs a fixed workspace to be deterministic; torch refuses deterministic matmuls without it
CUBLAS_WORKSPACE = ":4096:8"


@functools.lru_cache(maxsize=None)
def get_accelerator(device: str = "auto"):
    """One ``accelerate.Accelerator`` per device choice (its state is process-wide).

    Mixed precision is not handed to accelerate: it is a per-run setting (``training.precision``),
    applied by :func:`autocast` around the training forward pass, so one process can run both. What a
    run prepares on it is handed back by :func:`release` when the run ends, so a sweep does not pile up models.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    if device not in {"auto", "cpu", "cuda", "mps"}:
        raise VLBenchError(f"--device {device!r}: use auto, cpu, cuda or mps.")
    if device == "cuda" and not torch.cuda.is_available():
        raise VLBenchError("--device cuda: no CUDA device is visible; use --device auto or cpu.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VLBenchError("--device mps: MPS is not available on this machine; use --device auto or cpu.")
    launched = _launched_processes()
    # under torchrun on a machine without an accelerator, "auto" must be said as cpu: accelerate otherwise
    # joins the process group yet runs as one process (no gradient sync, every process "main")
    mps = getattr(torch.backends, "mps", None)
    no_accelerator = not torch.cuda.is_available() and not (mps is not None and mps.is_available())
    cpu = device == "cpu" or (device == "auto" and launched > 1 and no_accelerator)
    # non_blocking: batches come from pinned memory on CUDA, so their copy overlaps the previous step
    accelerator = Accelerator(cpu=cpu, mixed_precision="no",
                              dataloader_config=DataLoaderConfiguration(non_blocking=True))
    if launched > 1 and accelerator.num_processes != launched:
        raise VLBenchError(f"this process is one of {launched} (WORLD_SIZE) but accelerate runs it as one of "
                           f"{accelerator.num_processes} on {accelerator.device.type}: it cannot train data-parallel "
                           "there; pass --device cpu or --device cuda.")
    return accelerator


def _launched_processes() -> int:
    """How many processes a launcher (torchrun, accelerate launch) started for this run (1 without one)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


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
    """``fp32``, ``bf16`` or ``fp16`` for a run.

    ``auto`` picks bf16 where :func:`native_bf16` holds, fp16 (with gradient scaling) on other CUDA GPUs
    (T4, V100), and fp32 elsewhere.
    """
    if requested == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if requested == "bf16" and device.type == "mps":
        raise VLBenchError("training.precision bf16: autocast to bf16 is not supported on mps; use fp32 or auto.")
    if requested == "fp16" and device.type != "cuda":
        raise VLBenchError(
            f"training.precision fp16: fp16 training with a gradient scaler needs a CUDA GPU, not {device.type}; "
            "use bf16, fp32 or auto."
        )
    return requested


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context the training forward pass runs in: bf16 or fp16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def grad_scaler(precision: str, device: torch.device) -> Optional[Any]:
    """A ``torch.amp.GradScaler`` for fp16 training (its small gradients would underflow unscaled), else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool, device: torch.device) -> Iterator[bool]:
    """Let fp32 matmuls and convolutions use TF32 tensor cores inside the block (CUDA only); yields whether they may.

    The previous settings come back on exit, so evaluation outside the block computes in full fp32.
    """
    if device.type != "cuda":
        yield False
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield enabled
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def set_deterministic(enabled: bool) -> None:
    """Switch torch's deterministic algorithms on or off for the rest of the run (training and scoring).

    On: an op without a deterministic implementation raises instead of running; cuDNN autotuning is off
    and cuBLAS gets a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, unless the environment sets one;
    set it before the process starts for it to reach a CUDA context created earlier).
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False


def release(accelerator: Any, *objects: Any) -> None:
    """Drop the accelerator's references to what one run prepared (models, optimizers, loaders)."""
    ids = {id(obj) for obj in objects if obj is not None}
    for name in ("_models", "_optimizers", "_schedulers", "_dataloaders"):
        held = getattr(accelerator, name, None)
        if isinstance(held, list):
            held[:] = [obj for obj in held if id(obj) not in ids]


def free_device_memory(device: torch.device) -> None:
    """On CUDA, collect garbage and hand cached blocks of freed tensors back, so the next run starts clean."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def describe_device(device: torch.device) -> str:
    """Human-readable device name for run records."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
