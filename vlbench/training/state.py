"""What one fit produces (:class:`FitResult`) and where its loop stands (:class:`LoopState`, saved in checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

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
