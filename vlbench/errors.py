"""User-facing errors: each one becomes a single clear line and exit code 2 at the CLI."""

from __future__ import annotations

from typing import Optional

__all__ = ["VLBenchError", "UnknownNameError", "SpecError", "DataError", "TrainingError"]


class VLBenchError(Exception):
    """An error caused by the user's input or environment, reported as one line (what, where, fix)."""

    exit_code = 2


class UnknownNameError(VLBenchError, KeyError):
    """A task, baseline, dataset, metric or model name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class SpecError(VLBenchError):
    """A YAML spec or a --set override that does not validate."""


class DataError(VLBenchError):
    """Missing, corrupt or malformed data files (datasets, predictions, references)."""


class TrainingError(VLBenchError):
    """Training could not go on (for example a NaN loss).

    ``step`` (the first bad optimizer step) and ``last_finite_loss`` say where, when known; ``hint`` is a
    short fix for failed records and reports.
    """

    def __init__(self, message: str = "", *, step: Optional[int] = None, last_finite_loss: Optional[float] = None,
                 hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.step = step
        self.last_finite_loss = last_finite_loss
        self.hint = hint
