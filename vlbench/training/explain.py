"""Training failures that a setting caused (torch.compile, deterministic algorithms), told as one-line errors."""

from __future__ import annotations

import torch
from torch import nn

from vlbench.errors import TrainingError
from vlbench.specs import TrainingConfig

__all__ = ["compile_model", "explain_failure"]


def compile_model(model: nn.Module, cfg: TrainingConfig, label: str) -> nn.Module:
    """``torch.compile`` with the run's backend; a backend that cannot start is a TrainingError naming the setting."""
    try:
        return torch.compile(model, backend=cfg.compile_backend)
    except Exception as exc:  # noqa: BLE001  an unknown or broken backend is the setting's fault
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingError(
            f"{label}: training.compile_backend {cfg.compile_backend!r}: {text}; "
            "train without --compile or pick another backend.", hint="--no-compile"
        ) from exc


def explain_failure(exc: RuntimeError, cfg: TrainingConfig, label: str) -> Exception:
    """A one-line TrainingError for failures that a setting caused, else the original error."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if cfg.compile:
        from torch._dynamo.exc import TorchDynamoException

        if isinstance(exc, TorchDynamoException):
            return TrainingError(
                f"{label}: torch.compile (backend {cfg.compile_backend!r}) failed: {text}; "
                "train without --compile or set training.compile_backend.", hint="--no-compile"
            )
    if cfg.deterministic and "deterministic" in text:
        return TrainingError(f"{label}: {text}; train without --deterministic.", hint="--no-deterministic")
    return exc
