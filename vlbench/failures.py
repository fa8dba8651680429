"""What a run that did not finish leaves behind: a failed record naming the error, the step and a hint."""

from __future__ import annotations

import gc
import math
from typing import Any, Optional

__all__ = ["OOM_HINT", "describe_failure", "is_out_of_memory", "release_memory"]

OOM_HINT = "a smaller --batch-size or gradient accumulation (training.grad_accum_steps)"
_MAX_REASON = 500


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's device out-of-memory error (CUDA, MPS) and for Python's MemoryError."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom))


def release_memory() -> None:
    """Give back what a failed run held, so that the next run in the sweep starts with a clean device."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _finite_or_none(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """The ``failure`` block of a failed record: type, one-line reason, step, last finite loss, hint."""
    step = getattr(exc, "step", None)
    hint = getattr(exc, "hint", None)
    if is_out_of_memory(exc):
        hint = OOM_HINT
    return {
        "type": type(exc).__name__,
        "reason": _one_line(exc),
        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
        "last_finite_loss": _finite_or_none(getattr(exc, "last_finite_loss", None)),
        "hint": hint if isinstance(hint, str) else None,
    }
