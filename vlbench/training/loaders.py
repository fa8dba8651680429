"""The data passes of training: how many, where the splits live, one pass's prepared loader, ending it early."""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Optional

import torch

from vlbench.specs import TrainingConfig
from vlbench.training.contract import TrainableTask

__all__ = ["step_budget", "device_splits", "train_loader", "end_loader", "with_last"]


def step_budget(cfg: TrainingConfig, train_examples: int, num_processes: int) -> tuple[int, int, int]:
    """(optimizer steps, epochs, validate every this many epochs) of a run over ``train_examples`` examples."""
    batches = max(1, math.ceil(train_examples / cfg.batch_size))
    per_epoch = math.ceil(math.ceil(batches / num_processes) / cfg.grad_accum_steps)
    epochs = max(cfg.epochs, 1)
    eval_every = cfg.eval_every_epochs
    if cfg.min_steps is not None and cfg.epochs and per_epoch * epochs < cfg.min_steps:
        # a small training set: more passes over it, validated as many times as ``epochs`` passes would be
        stretched = math.ceil(cfg.min_steps / per_epoch)
        eval_every = cfg.eval_every_epochs * math.ceil(stretched / epochs)
        epochs = stretched
    total = per_epoch * epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if cfg.epochs else cfg.max_steps
    return total, math.ceil(total / per_epoch), eval_every


def device_splits(task: TrainableTask, cfg: TrainingConfig, device: torch.device) -> Optional[Any]:
    """Where the run keeps its training and validation splits on the device (None: it collates every batch)."""
    wanted = cfg.data_on_device if cfg.data_on_device is not None else cfg.num_workers == 0
    if not wanted:
        return None
    from vlbench.data.resident import DeviceSplits, resident_budget

    return DeviceSplits(task, device, resident_budget(device))


def with_last(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Yield ``(item, is_last)``, looking one item ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def train_loader(task: TrainableTask, accelerator: Any, batch_size: int, modalities: tuple[str, ...],
                 generator: torch.Generator, resident: Optional[Any] = None) -> Any:
    """One training pass's prepared loader: of positions for ``resident.batch`` when the split is on the device
    (the same sampler, so the same order), else of batches collated on the host."""
    if resident is not None:
        return accelerator.prepare_data_loader(
            task.index_loader("train", batch_size, shuffle=True, generator=generator), device_placement=False)
    return accelerator.prepare_data_loader(
        task.loader("train", batch_size, modalities, shuffle=True, generator=generator))


def end_loader(loader: Any) -> None:
    """Unregister an accelerate loader left mid-pass (it unregisters itself only when it runs to the end)."""
    refs = getattr(getattr(loader, "gradient_state", None), "dataloader_references", None)
    if refs is not None and any(ref is loader for ref in refs):
        loader.end()
