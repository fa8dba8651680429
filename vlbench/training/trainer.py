"""The fine-tuning loop: AdamW, warm-up then decay, clipping, per-epoch validation, early stopping.

The best validation checkpoint is kept in memory and restored before the caller scores the test split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from vlbench.errors import TrainingError
from vlbench.specs import TrainingConfig
from vlbench.tasks.base import EvalResult, TaskType
from vlbench.training.device import autocast, resolve_precision
from vlbench.training.optim import make_optimizer, make_scheduler
from vlbench.training.seeding import data_generator

__all__ = ["FitResult", "fit"]


@dataclass
class FitResult:
    """What training produced: the per-epoch history and where the best validation score was."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("-inf")
    steps: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_examples: int = 0
    eval_seconds: float = 0.0
    precision: str = "fp32"


def _steps_per_epoch(task: TaskType, batch_size: int) -> int:
    return max(1, math.ceil(task.num_examples("train") / batch_size))


def fit(
    model: nn.Module,
    task: TaskType,
    cfg: TrainingConfig,
    *,
    accelerator: Any,
    seed: int,
    modalities: tuple[str, ...],
    progress: Optional[Any] = None,
    label: str = "train",
) -> FitResult:
    """Train ``model`` on the task's train split; returns history with the best weights restored."""
    device = accelerator.device
    precision = resolve_precision(cfg.precision, device)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    per_epoch = _steps_per_epoch(task, cfg.batch_size)
    total_steps = per_epoch * max(cfg.epochs, 1)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps) if cfg.epochs else cfg.max_steps
    epochs = math.ceil(total_steps / per_epoch)
    scheduler = make_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    generator = data_generator(seed)
    result = FitResult(precision=precision)
    best_state: Optional[dict[str, torch.Tensor]] = None
    bad_epochs = 0
    bar = progress.add_task(label, total=total_steps) if progress is not None else None
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, loss_count, epoch_start = 0.0, 0, time.perf_counter()
        for batch in task.batches("train", cfg.batch_size, modalities, shuffle=True, generator=generator):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(precision, device):
                loss = task.loss(model(batch), batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{label}: loss became {loss.item()} at epoch {epoch}, step {result.steps + 1}; "
                    f"lower the learning rate (--lr, now {cfg.lr:g}) or check the data."
                )
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            result.steps += 1
            result.train_examples += int(batch["index"].shape[0])
            loss_sum += float(loss.detach()) * int(batch["index"].shape[0])
            loss_count += int(batch["index"].shape[0])
            if bar is not None:
                progress.update(bar, advance=1, description=f"{label} epoch {epoch} loss {loss_sum / loss_count:.4f}")
            if result.steps >= total_steps:
                break
        train_loss = loss_sum / max(loss_count, 1)
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "steps": result.steps}
        last = result.steps >= total_steps or epoch == epochs
        if epoch % cfg.eval_every_epochs == 0 or last:
            eval_start = time.perf_counter()
            val: EvalResult = task.evaluate(model, "validation", cfg.eval_batch_size, modalities, device)
            result.eval_seconds += time.perf_counter() - eval_start
            entry.update({"validation": val.primary, "validation_metrics": val.metrics})
            if val.primary > result.best_validation + cfg.min_delta or best_state is None:
                result.best_validation, result.best_epoch = val.primary, epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in accelerator.unwrap_model(model).state_dict().items()}
                bad_epochs = 0
            else:
                bad_epochs += 1
        entry["seconds"] = time.perf_counter() - epoch_start
        result.history.append(entry)
        if last:
            break
        if cfg.patience and bad_epochs >= cfg.patience:
            result.stopped_early = True
            break
    result.train_seconds = time.perf_counter() - start
    if best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(best_state)
    if bar is not None:
        progress.remove_task(bar)
    return result
