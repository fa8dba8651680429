"""What the trainer asks of the task it trains, as typing protocols (``vlbench.tasks.base.TaskType`` fits them).

The training layer sits below the tasks layer (docs/architecture.md): it names a task by these
protocols instead of importing ``vlbench.tasks``, and any object with these methods can be trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

import torch

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["Scores", "TrainableTask"]


class Scores(Protocol):
    """A split's scores: the value early stopping compares, and the flat metrics kept in the history."""

    primary: float
    metrics: dict[str, float]


class TrainableTask(Protocol):
    """The task methods that :func:`vlbench.training.trainer.fit` calls."""

    def set_loading(self, num_workers: int = 0, pin_memory: bool = False) -> None:
        """How the task's DataLoaders load (worker processes, pinned batches)."""

    def num_examples(self, split: str) -> int:
        """Number of examples in a split."""

    def loader(self, split: str, batch_size: int, modalities: tuple[str, ...], *, shuffle: bool = False,
               generator: Optional[torch.Generator] = None) -> "DataLoader":
        """A DataLoader of collated batches for one pass over a split."""

    def index_loader(self, split: str, batch_size: int, *, shuffle: bool = False,
                     generator: Optional[torch.Generator] = None) -> "DataLoader":
        """A DataLoader of each batch's example positions, in the order :meth:`loader` yields batches."""

    def resident_split(self, split: str, modalities: tuple[str, ...], device: torch.device,
                       budget: int) -> Optional[Any]:
        """The split's model inputs kept on ``device``, or None."""

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of one batch."""

    def augment_inputs(self) -> Any:
        """What ``training.augment`` needs of the prepared task (a :class:`vlbench.training.augment.AugmentInputs`);
        called only when the run augments."""

    def evaluate(self, model: torch.nn.Module, split: str, batch_size: int, modalities: tuple[str, ...],
                 device: torch.device) -> Scores:
        """Predict a split with the model and score it."""
