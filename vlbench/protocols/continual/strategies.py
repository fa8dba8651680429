"""Continual strategies: what happens around each stage's ordinary fine-tuning.

* ``naive``  — fine-tune on each stage in turn (the lower bound).
* ``joint``  — one fine-tuning on all stages at once (the upper bound; no sequence, so only ACC).
* ``ewc``    — naive plus the elastic-weight-consolidation penalty of every finished stage.
* ``replay`` — naive plus, each step, a batch drawn from a bounded reservoir memory of earlier stages.
* ``heads``  — parameter isolation: one task head per stage over a shared encoder; a stage is scored with its
  own head (the task-incremental setting: the stage is known at test time).
* ``isolated`` — parameter isolation of everything trainable: each stage trains its own copy of the trainable
  parameters (and buffers), from their initial values. With a PEFT baseline (``vilt-lora``, ``vilt-adapter``,
  ``text-bert-lora`` ...) the frozen backbone is shared and each stage gets its own LoRA or adapter weights and
  head (one adapter per task); with a fully trainable baseline it is one model per stage. Task-incremental.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from vlbench.protocols.continual.ewc import Anchor, diagonal_fisher, ewc_penalty
from vlbench.protocols.continual.memory import ReservoirMemory

__all__ = ["STRATEGIES", "StrategySettings", "Strategy", "make_strategy"]

STRATEGIES = ("naive", "joint", "ewc", "replay", "heads", "isolated")


@dataclass
class StrategySettings:
    """Knobs of the strategies (recorded with every run of the sequence)."""

    ewc_lambda: float = 1000.0
    fisher_samples: int = 256
    memory_size: int = 500
    replay_batch_size: Optional[int] = None  # None: the training batch size

    def as_dict(self, strategy: str) -> dict[str, Any]:
        """Only the settings the strategy reads (so they alone enter its config hash)."""
        if strategy == "ewc":
            return {"ewc_lambda": self.ewc_lambda, "fisher_samples": self.fisher_samples}
        if strategy == "replay":
            return {"memory_size": self.memory_size, "replay_batch_size": self.replay_batch_size}
        return {}


class _TrainingView:
    """A stage task whose loss also carries the strategy's extra term; everything else is the task's."""

    def __init__(self, task: Any, extra: Any) -> None:
        self._task = task
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task loss plus the strategy's term."""
        return self._task.loss(outputs, batch) + self._extra()


class Strategy:
    """Naive sequential fine-tuning; subclasses add a term to the loss or swap parameters around stages."""

    def __init__(self, model: nn.Module, tasks: list[Any], modalities: tuple[str, ...], device: torch.device,
                 settings: StrategySettings, batch_size: int, seed: int) -> None:
        self.model, self.tasks, self.modalities, self.device = model, tasks, modalities, device
        self.settings, self.batch_size, self.seed = settings, batch_size, seed

    def before_stage(self, stage: int) -> None:
        """Called before stage ``stage`` trains."""

    def training_task(self, stage: int) -> Any:
        """What the trainer sees for this stage."""
        return self.tasks[stage]

    def after_stage(self, stage: int) -> None:
        """Called after stage ``stage`` trained (best validation weights restored)."""

    def evaluate(self, stage: int, split: str, batch_size: int) -> Any:
        """Score the current model on one stage's split."""
        return self.tasks[stage].evaluate(self.model, split, batch_size, self.modalities, self.device)


class EWCStrategy(Strategy):
    """Naive plus lambda/2 * sum F (theta - theta*)^2 over every finished stage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.anchors: list[Anchor] = []

    def training_task(self, stage: int) -> Any:
        """The stage task with the EWC penalty added to its loss."""
        if not self.anchors:
            return self.tasks[stage]
        return _TrainingView(self.tasks[stage], lambda: ewc_penalty(self.model, self.anchors, self.settings.ewc_lambda))

    def after_stage(self, stage: int) -> None:
        """Estimate the stage's Fisher diagonal on a seeded sample of its training examples and anchor the weights."""
        task = self.tasks[stage]
        count = min(self.settings.fisher_samples, task.num_examples("train"))
        picks = np.random.default_rng([self.seed, stage]).choice(task.num_examples("train"), size=count, replace=False)

        def single(index: int) -> dict[str, torch.Tensor]:
            return {k: v.to(self.device) for k, v in task.collate("train", [int(index)], self.modalities).items()}

        fisher = diagonal_fisher(self.model, (single(i) for i in picks), lambda m, b: task.loss(m(b), b))
        weights = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.anchors.append(Anchor(fisher, weights))


class ReplayStrategy(Strategy):
    """Naive plus the loss on a batch of earlier stages' examples from a bounded reservoir memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory: ReservoirMemory[tuple[int, int]] = ReservoirMemory(self.settings.memory_size, seed=self.seed)

    def training_task(self, stage: int) -> Any:
        """The stage task with the replay loss added (plain until the memory holds something)."""
        if not len(self.memory):
            return self.tasks[stage]
        return _TrainingView(self.tasks[stage], self._replay_loss)

    def _replay_loss(self) -> torch.Tensor:
        size = self.settings.replay_batch_size or self.batch_size
        by_stage: dict[int, list[int]] = {}
        for stage, index in self.memory.sample(size):
            by_stage.setdefault(stage, []).append(index)
        total = torch.zeros((), device=self.device)
        for stage, indices in by_stage.items():
            task = self.tasks[stage]
            batch = {k: v.to(self.device) for k, v in task.collate("train", indices, self.modalities).items()}
            total = total + task.loss(self.model(batch), batch) * len(indices) / size
        return total

    def after_stage(self, stage: int) -> None:
        """Stream the stage's training examples (in a seeded order) through the reservoir."""
        count = self.tasks[stage].num_examples("train")
        order = np.random.default_rng([self.seed, stage, 1]).permutation(count)
        self.memory.extend((stage, int(i)) for i in order)


class HeadsStrategy(Strategy):
    """One task head per stage over the shared encoder; each stage is scored with its own head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from vlbench.peft.apply import encoder_slot

        _, slot = encoder_slot(self.model)
        self._prefix = f"{slot}."
        initial = self._head_state()
        self.heads = [copy.deepcopy(initial) for _ in self.tasks]
        self.current: Optional[int] = None

    def _head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if not k.startswith(self._prefix)}

    def _load(self, stage: int) -> None:
        self.model.load_state_dict(self.heads[stage], strict=False)

    def before_stage(self, stage: int) -> None:
        """Put the stage's own (fresh) head in place."""
        self._load(stage)
        self.current = stage

    def after_stage(self, stage: int) -> None:
        """Keep the trained head of the stage."""
        self.heads[stage] = self._head_state()

    def evaluate(self, stage: int, split: str, batch_size: int) -> Any:
        """Score a stage with its own head, then put the current stage's head back."""
        self._load(stage)
        try:
            return super().evaluate(stage, split, batch_size)
        finally:
            if self.current is not None:
                self._load(self.current)


class IsolatedStrategy(HeadsStrategy):
    """Each stage trains its own copy of every trainable parameter and buffer; the frozen ones are shared.

    Frozen parameters never change, so the stages share them exactly; buffers (batch-norm statistics) move
    in training even under a frozen layer, so each stage keeps its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        model = args[0] if args else kwargs["model"]
        self._frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        super().__init__(*args, **kwargs)

    def _head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k not in self._frozen}


def make_strategy(name: str, *args: Any, **kwargs: Any) -> Strategy:
    """The strategy object for a name in ``STRATEGIES`` (``joint`` trains like naive on the union task)."""
    classes = {"naive": Strategy, "joint": Strategy, "ewc": EWCStrategy, "replay": ReplayStrategy, "heads": HeadsStrategy,
               "isolated": IsolatedStrategy}
    return classes[name](*args, **kwargs)
