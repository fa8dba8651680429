"""What one fit produces (:class:`FitResult`) and where its loop stands (:class:`LoopState`, saved in checkpoints)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

__all__ = ["FitResult", "LoopState"]


@dataclass
class FitResult:
    """What training produced: the per-epoch history, where the best validation score was, and how it ran."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("-inf")
    steps: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_examples: int = 0
    eval_seconds: float = 0.0
    precision: str = "fp32"
    grad_accum_steps: int = 1
    tf32: bool = False
    compiled: bool = False
    deterministic: bool = False
    resumed_from_step: Optional[int] = None
    epochs: int = 0
    eval_every_epochs: int = 1
    data_on_device: bool = False

    def settings(self) -> dict[str, Any]:
        """Record fields saying how the run trained (beyond its config) and whether it resumed."""
        return {
            "grad_accum_steps": self.grad_accum_steps,
            "tf32": self.tf32,
            "compile": self.compiled,
            "deterministic": self.deterministic,
            "resumed_from_step": self.resumed_from_step,
            "steps_this_run": self.steps - (self.resumed_from_step or 0),
            "epochs_planned": self.epochs,
            "eval_every_epochs": self.eval_every_epochs,
            "data_on_device": self.data_on_device,
        }


@dataclass
class LoopState:
    """The loop's position and bookkeeping, saved in every checkpoint (JSON)."""

    epoch: int = 1  # the epoch running or to run next
    skip_batches: int = 0  # micro-batches of ``epoch`` already trained
    step: int = 0  # optimizer steps taken
    train_examples: int = 0
    loss_sum: float = 0.0  # of ``epoch`` so far, summed over examples
    loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: Optional[float] = None
    best: Optional[str] = None  # name of the best weights' checkpoint folder
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    last_finite_loss: Optional[float] = None

    @classmethod
    def from_saved(cls, saved: Any) -> "LoopState":
        """The state a checkpoint saved; ValueError when a field is missing, unknown, of another type or negative."""
        if not isinstance(saved, dict):
            raise ValueError(f"the loop state is a {type(saved).__name__}, not a mapping")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(saved) - names), sorted(names - set(saved))
        if unknown or missing:
            raise ValueError(f"loop state fields unknown {unknown}, missing {missing}")
        for name in sorted(names):
            value = saved[name]
            if not _is_a(value, hints[name]):
                raise ValueError(f"loop state field {name!r} is {value!r}")
            if hints[name] is int and value < 0:  # counters and positions (a loss or a score may be negative)
                raise ValueError(f"loop state field {name!r} is negative ({value!r})")
        return cls(**saved)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type ``hint`` (the few types a loop state holds)."""
    if typing.get_origin(hint) is Union:
        return any(_is_a(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        return isinstance(value, list)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True
