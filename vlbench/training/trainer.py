"""The fine-tuning loop: AdamW, warm-up then decay, clipping, accumulation, per-epoch validation, early stopping.

The best validation weights are kept (in memory, and on disk when checkpointing) and restored before the
caller scores the test split. With a checkpoint folder, a run killed at any moment goes on from its last
checkpoint: same weights, optimizer, schedule, random states and data order, so that on one process the
resumed run ends with the numbers of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from vlbench.errors import TrainingError
from vlbench.specs import TrainingConfig
from vlbench import distributed
from vlbench.training.adversarial import EmbeddingAdversary
from vlbench.training.augment import BatchAugmenter
from vlbench.training.checkpoint import CheckpointStore, trainable_state
from vlbench.training.contract import Scores, TrainableTask
from vlbench.training.device import (
    autocast,
    free_device_memory,
    grad_scaler,
    release,
    resolve_precision,
    set_deterministic,
    tf32_matmuls,
)
from vlbench.training.explain import compile_model, explain_failure
from vlbench.training.loaders import device_splits, end_loader, step_budget, train_loader, with_last
from vlbench.training.optim import make_optimizer, make_scheduler
from vlbench.training.resume import every_process_state, restore, resume_problem
from vlbench.training.seeding import data_generator
from vlbench.training.state import FitResult, LoopState

__all__ = ["FitResult", "fit", "train_loader", "CHECK_EVERY"]

_PLAIN = frozenset({"NO", "MULTI_CPU", "MULTI_GPU"})

# optimizer steps between looks at the loss from the host: each look waits for the device to catch up
CHECK_EVERY = 10


class _Trainer:
    """One run's training: built by :func:`fit`, then ``run`` once and ``close``."""

    def __init__(self, model: nn.Module, task: TrainableTask, cfg: TrainingConfig, accelerator: Any, seed: int,
                 modalities: tuple[str, ...], progress: Optional[Any], label: str,
                 checkpoint_dir: Optional[Path], run_id: Optional[str], warn: Callable[[str], None]) -> None:
        self.task, self.cfg, self.accelerator, self.modalities = task, cfg, accelerator, modalities
        self.progress, self.label = progress, label
        self.device = accelerator.device
        self.precision = resolve_precision(cfg.precision, self.device)
        set_deterministic(cfg.deterministic)
        task.set_loading(cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.device_splits = device_splits(task, cfg, self.device)
        self.resident = self.device_splits.get("train", modalities) if self.device_splits is not None else None
        if self.resident is None and cfg.data_on_device:
            self._say(f"{label}: data_on_device: the training data is collated on the host instead (the task type "
                      "cannot keep it on the device, or it does not fit; see docs/training.md)")
        self.module = model  # the caller's module: weights are read from and restored into it
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        self.accum = cfg.grad_accum_steps
        self.total_steps, self.epochs, self.eval_every = step_budget(
            cfg, task.num_examples("train"), accelerator.num_processes)
        self.scheduler = make_scheduler(optimizer, self.total_steps, cfg.warmup_ratio)  # counts optimizer steps
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.train_model = self.model  # compiled in ``run``, where a failure still releases what was prepared
        self.scaler = grad_scaler(self.precision, self.device)
        self.generator = data_generator(seed)
        self.epoch_start = self.generator.get_state()
        self.state = LoopState()
        self.best_state: Optional[dict[str, torch.Tensor]] = None
        self.resumed_from: Optional[int] = None
        self.loaders: list[Any] = []
        self.store = CheckpointStore(checkpoint_dir, run_id, seed, warn) if checkpoint_dir is not None else None
        self.bar: Optional[Any] = None
        self.loss_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        # one process or plain DDP: step torch directly (accelerate's wrappers add per-step host work there)
        self.plain = getattr(accelerator.distributed_type, "name", "") in _PLAIN
        # robustness options (docs/robustness.md): training batches only, never validation or test
        process = int(getattr(accelerator, "process_index", 0))
        self.augmenter = BatchAugmenter(cfg.augment, task.augment_inputs(), seed, label, process) if cfg.augment else None
        self.adversary = (EmbeddingAdversary(cfg.adversarial, model, seed, modalities, label, process)
                          if cfg.adversarial else None)

    # --- the run ---------------------------------------------------------------------------------------
    def run(self) -> FitResult:
        """Train (or go on training) until the step budget, the epochs or the patience run out."""
        if self.cfg.compile:
            self.train_model = compile_model(self.model, self.cfg, self.label)
        if self.store is not None:
            self._resume()
        s = self.state
        if self.progress is not None:
            self.bar = self.progress.add_task(self.label, total=self.total_steps, completed=s.step)
        for epoch in range(s.epoch, self.epochs + 1):
            if s.finished:
                break
            self.module.train()
            start = time.perf_counter()
            with tf32_matmuls(self.cfg.tf32, self.device):
                try:
                    self._train_epoch(epoch)
                except RuntimeError as exc:
                    explained = explain_failure(exc, self.cfg, self.label)
                    if explained is exc:
                        raise
                    raise explained from exc
            seconds = time.perf_counter() - start
            s.train_seconds += seconds
            self._end_epoch(epoch, seconds)
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state, strict=False)
        return FitResult(
            history=s.history, best_epoch=s.best_epoch,
            best_validation=s.best_validation if s.best_validation is not None else float("-inf"),
            steps=s.step, stopped_early=s.stopped_early, train_seconds=s.train_seconds,
            train_examples=int(self._global_sums(s.train_examples)[0]), eval_seconds=s.eval_seconds,
            precision=self.precision,
            grad_accum_steps=self.accum, tf32=self.cfg.tf32 and self.device.type == "cuda",
            compiled=self.cfg.compile, deterministic=self.cfg.deterministic, resumed_from_step=self.resumed_from,
            epochs=self.epochs, eval_every_epochs=self.eval_every, data_on_device=self.resident is not None,
        )

    def _train_epoch(self, epoch: int) -> None:
        s, cfg, device = self.state, self.cfg, self.device
        if s.skip_batches == 0:
            s.loss_sum, s.loss_count = 0.0, 0
            self.epoch_start = self.generator.get_state()
        # else: the generator was set back to this epoch's start by _resume, so the order is the same
        loader = train_loader(self.task, self.accelerator, cfg.batch_size, self.modalities, self.generator,
                              self.resident)
        self.loaders.append(loader)
        shard = self.accelerator.skip_first_batches(loader, s.skip_batches) if s.skip_batches else loader
        source = shard if self.resident is None else map(self.resident.batch, shard)
        loss_sum = torch.tensor(s.loss_sum, dtype=self.loss_dtype, device=device)
        group_loss: Optional[torch.Tensor] = None  # the group's loss summed over its examples, on the device
        loss_count, group_n, micro = s.loss_count, 0, s.skip_batches
        window: list[torch.Tensor] = []  # each optimizer step's mean loss since the last look
        nominal = self.accum * cfg.batch_size
        batches = with_last(source)
        try:
            for batch, last_batch in batches:
                n = int(batch["index"].shape[0])
                micro += 1
                if self.augmenter is not None:
                    batch = self.augmenter(batch, epoch, micro)
                ends_group = micro % self.accum == 0 or last_batch
                # gradients of micro-batches inside a group stay local; the group's last one syncs them
                sync = contextlib.nullcontext() if ends_group else self.accelerator.no_sync(self.model)
                with sync:
                    with autocast(self.precision, device):
                        loss = self.task.loss(self.train_model(batch), batch)
                    if self.adversary is None:
                        self._backward(loss, n, nominal)
                    else:  # the clean loss, then FreeLB's K perturbed ones (the loss reported stays the clean one)
                        self.adversary.train_step(loss, batch, self._perturbed_loss,
                                                  lambda part: self._backward(part, n, nominal),
                                                  lambda: self.accelerator.no_sync(self.model), epoch, micro)
                term = loss.detach().to(self.loss_dtype) * n
                group_loss = term if group_loss is None else group_loss + term
                group_n += n
                if not ends_group:
                    continue
                self._optimizer_step(group_n, nominal)
                s.step += 1
                s.train_examples += group_n
                loss_sum = loss_sum + group_loss
                loss_count += group_n
                window.append(group_loss / group_n)
                group_loss, group_n = None, 0
                done = s.step >= self.total_steps
                every = cfg.checkpoint_every_steps
                save = self.store is not None and every > 0 and s.step % every == 0 and not done and not last_batch
                if save or done or last_batch or s.step % CHECK_EVERY == 0:
                    self._look(window, epoch, loss_sum, loss_count)
                    window = []
                if save:
                    s.skip_batches, s.loss_sum, s.loss_count = micro, float(loss_sum), loss_count
                    self._save(mid_epoch=True)
                if done:
                    break
        finally:
            batches.close()
            end_loader(shard)
        s.loss_sum, s.loss_count = float(loss_sum), loss_count

    def _backward(self, loss: torch.Tensor, n: int, nominal: int) -> None:
        # each micro-batch counts by its examples: the group's gradient is the mean over its examples
        scaled = loss if self.accum == 1 else loss * (n / nominal)
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        if self.plain:
            scaled.backward()
        else:
            self.accelerator.backward(scaled)

    def _perturbed_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # the uncompiled module: the perturbation's hooks come and go with every batch
        with autocast(self.precision, self.device):
            return self.task.loss(self.model(batch), batch)

    def _optimizer_step(self, group_n: int, nominal: int) -> None:
        optimizer = self.optimizer.optimizer if self.plain else self.optimizer
        correct = self.accum > 1 and group_n != nominal  # a short last group: rescale to its true mean
        if self.scaler is not None and (correct or self.cfg.grad_clip):
            self.scaler.unscale_(optimizer)
        if correct:
            grads = [p.grad for p in self.module.parameters() if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, nominal / group_n)
        if self.cfg.grad_clip:
            if self.plain:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
            else:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _look(self, window: list[torch.Tensor], epoch: int, loss_sum: torch.Tensor, loss_count: int) -> None:
        """Bring the recent losses to the host (one sync): stop on a non-finite one, update the bar."""
        s = self.state
        stacked = torch.stack([*window, loss_sum.to(self.loss_dtype)])
        if self.accelerator.num_processes > 1:  # every process stops at the same step, on any process's bad loss
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        values = stacked.tolist()
        first = s.step - len(window) + 1
        for offset, value in enumerate(values[:-1]):
            if not math.isfinite(value):
                step = first + offset
                raise distributed.mark_agreed(TrainingError(  # every process sees the same reduced losses
                    f"{self.label}: loss became {value} at epoch {epoch}, step {step}; try a lower learning rate "
                    f"(--lr, now {self.cfg.lr:g}) or check the data.",
                    step=step, last_finite_loss=s.last_finite_loss, hint="a lower learning rate (--lr)",
                ))
            s.last_finite_loss = value
        if self.bar is not None:
            mean = values[-1] / max(loss_count, 1)
            self.progress.update(self.bar, completed=s.step, description=f"{self.label} epoch {epoch} loss {mean:.4f}")

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        s, cfg = self.state, self.cfg
        loss_sum, loss_count = self._global_sums(s.loss_sum, s.loss_count)
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / max(loss_count, 1), "steps": s.step}
        last = s.step >= self.total_steps or epoch == self.epochs
        if epoch % self.eval_every == 0 or last:
            eval_start = time.perf_counter()
            reading = self.device_splits.reading() if self.device_splits is not None else contextlib.nullcontext()
            with reading:
                val: Scores = self.task.evaluate(self.model, "validation", cfg.eval_batch_size, self.modalities,
                                                     self.device)
            eval_seconds = time.perf_counter() - eval_start
            s.eval_seconds += eval_seconds
            seconds += eval_seconds
            entry.update({"validation": val.primary, "validation_metrics": val.metrics})
            if s.best_validation is None or val.primary > s.best_validation + cfg.min_delta:
                s.best_validation, s.best_epoch, s.bad_epochs = val.primary, epoch, 0
                self.best_state = trainable_state(self.module)
                s.best = f"best-{s.step:08d}"
            else:
                s.bad_epochs += 1
        entry["seconds"] = seconds
        s.history.append(entry)
        stop_early = not last and bool(cfg.patience) and s.bad_epochs >= cfg.patience
        s.stopped_early = stop_early
        s.finished = last or stop_early
        s.epoch, s.skip_batches, s.loss_sum, s.loss_count = epoch + 1, 0, 0.0, 0
        self._save(mid_epoch=False)

    def _global_sums(self, *values: float) -> list[float]:
        """Sums over every process (the values themselves with one process)."""
        if self.accelerator.num_processes == 1:
            return list(values)
        total = torch.tensor(values, dtype=self.loss_dtype, device=self.device)
        return self.accelerator.reduce(total, reduction="sum").tolist()

    # --- checkpoints -----------------------------------------------------------------------------------
    def _save(self, mid_epoch: bool) -> None:
        if self.store is None:
            return
        # mid-epoch, resuming replays this epoch's order from its start and skips what was trained
        data = torch.Generator()
        data.set_state(self.epoch_start if mid_epoch else self.generator.get_state())
        loop, rngs = every_process_state(self.state, data, self.device)

        def write() -> None:
            training = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            }
            state = {"loop": loop, "rng_by_process": rngs, "total_steps": self.total_steps}
            self.store.save(state, trainable_state(self.module), training, self.state.best, self.best_state,
                            self.state.step)

        distributed.on_main(write)  # one writer; the others wait for it, and a failed write fails them all

    def _resume(self) -> None:
        assert self.store is not None
        store = self.store
        checkpoint = store.load_shared(lambda found: resume_problem(found, self.module, self.optimizer))
        if checkpoint is None:
            if store.ignored or store.rejected:
                self._say(f"{self.label}: starting afresh: {store.ignored or 'no checkpoint passed its check'}")
            return
        self.state = restore(checkpoint, self.module, self.optimizer, self.scheduler, self.scaler, self.generator)
        self.best_state = checkpoint.best
        self.epoch_start = self.generator.get_state()
        # a task type may change what a training pass yields with each pass: replay the passes begun before
        for _ in range(self.state.epoch - 1):
            self.task.loader("train", self.cfg.batch_size, self.modalities)
        self.resumed_from = self.state.step
        where = "training is done" if self.state.finished else f"epoch {self.state.epoch}"
        self._say(f"{self.label}: resuming from step {self.state.step} of {self.total_steps} ({where})")

    def _say(self, message: str) -> None:
        if self.progress is not None and not getattr(self.progress, "disable", False):
            self.progress.console.print(message, markup=False)

    def close(self) -> None:
        """Hand back what the accelerator holds for this run, drop this run's training objects, free device memory."""
        if self.bar is not None:
            self.progress.remove_task(self.bar)
            self.bar = None
        if self.cfg.compile:
            torch._dynamo.reset()  # compiled graphs hold the model's parameters
        release(self.accelerator, self.model, self.optimizer, *self.loaders)
        self.model = self.train_model = self.optimizer = self.scheduler = self.scaler = None
        self.loaders, self.best_state, self.resident = [], None, None
        if self.device_splits is not None:
            self.device_splits.clear()
        free_device_memory(self.device)


def fit(
    model: nn.Module,
    task: TrainableTask,
    cfg: TrainingConfig,
    *,
    accelerator: Any,
    seed: int,
    modalities: tuple[str, ...],
    progress: Optional[Any] = None,
    label: str = "train",
    checkpoint_dir: Optional[Path] = None,
    run_id: Optional[str] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> FitResult:
    """Train ``model`` on the task's train split; returns history with the best weights restored.

    With ``checkpoint_dir``, checkpoints are written there (every ``cfg.checkpoint_every_steps`` optimizer
    steps and at each epoch end), and a checkpoint of the same ``run_id`` (config digest) and seed found
    there is resumed from. ``warn`` (default: stderr) hears a ``warning:`` line for each checkpoint
    that failed its check and was set aside.
    """
    trainer = _Trainer(model, task, cfg, accelerator, seed, modalities, progress, label, checkpoint_dir, run_id,
                       warn or (lambda line: print(line, file=sys.stderr)))
    try:
        return trainer.run()
    finally:
        trainer.close()
