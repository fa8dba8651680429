"""A small real task type for trainer tests: least-squares regression on fixed synthetic data.

It goes through the same path as the shipped task types (``TaskType.loader`` -> ``BatchCollator`` ->
``collate`` -> model -> ``loss``), and is small enough that a test can train it many times per second.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from vlbench.specs import TrainingConfig
from vlbench.tasks.base import EvalResult, TaskType

DIM = 6


class RegressionTask(TaskType):
    """y = x·w + noise; loss MSE; score: negative validation MSE (higher is better)."""

    table = "regression"

    def __init__(self, n_train: int = 64, n_val: int = 16, seed: int = 0) -> None:  # no spec or dataset needed
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(DIM, generator=generator)
        self.x, self.y = {}, {}
        for split, n in (("train", n_train), ("validation", n_val), ("test", n_val)):
            x = torch.randn(n, DIM, generator=generator)
            self.x[split] = x
            self.y[split] = x @ weight + 0.1 * torch.randn(n, generator=generator)

    def num_examples(self, split: str) -> int:
        """Rows of a split."""
        return len(self.x[split])

    def collate(self, split: str, indices: list[int], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Inputs, targets and the example indices."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"index": index, "x": self.x[split][index], "y": self.y[split][index]}

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error over the batch."""
        return F.mse_loss(outputs.float(), batch["y"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batch_size: int, modalities: tuple[str, ...],
                 device: torch.device) -> EvalResult:
        """Negative MSE over the split."""
        model.eval()
        errors = []
        for batch in self.batches(split, batch_size, modalities):
            batch = {k: v.to(device) for k, v in batch.items()}
            errors.append((model(batch).float() - batch["y"]) ** 2)
        score = -float(torch.cat(errors).mean())
        return EvalResult({"neg_mse": score}, score)


class Regressor(nn.Module):
    """A two-layer network reading ``batch["x"]``."""

    def __init__(self, seed: int = 0, hidden: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(DIM, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One prediction per row."""
        return self.net(batch["x"]).squeeze(-1)


def config(**overrides: Any) -> TrainingConfig:
    """Training settings for the regression task (fp32, no early stopping unless asked)."""
    values: dict[str, Any] = dict(epochs=3, batch_size=8, eval_batch_size=64, lr=1e-2, warmup_ratio=0.25,
                                  patience=0, precision="fp32", checkpoint_every_steps=0)
    values.update(overrides)
    return TrainingConfig(**values)


def params(model: nn.Module) -> list[torch.Tensor]:
    """Copies of a model's parameters."""
    return [p.detach().clone() for p in model.parameters()]


class StepSpy:
    """Records every optimizer step's gradients and learning rate (global optimizer hook)."""

    def __init__(self) -> None:
        self.grads: list[list[torch.Tensor]] = []
        self.lrs: list[float] = []
        self._handle: Optional[Any] = None

    def __enter__(self) -> "StepSpy":
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        def hook(optimizer, args, kwargs):
            self.lrs.append(optimizer.param_groups[0]["lr"])
            self.grads.append([p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]])

        self._handle = register_optimizer_step_pre_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()
