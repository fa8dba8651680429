"""The same fine-tuning through the Hugging Face ``Trainer`` and through vlbench: speed and loss curves.

    python benchmarks/hf_trainer.py [--baseline vilt ...] [--steps 150] [--batch-size 64] [--precision auto]

What a user would write instead of vlbench: the model wrapped so that it returns ``{"loss", "logits"}``,
the task's collate as data collator, ``TrainingArguments`` with the spec's learning rate, weight decay,
linear warm-up/decay, gradient clipping and precision, and the Trainer's own AdamW. Both start from the
same weights (same seed) and see the same batches in the same order (the Trainer's train DataLoader is
vlbench's seeded one), so their per-step losses should agree up to dropout masks and the optimizer's
parameter grouping. Printed per baseline: examples/second of both, the ratio vlbench / Trainer, the two
loss curves side by side (every ``--every`` steps) and their largest absolute difference.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn

from _common import add_common_args, fixed_batches, bare_loop, fresh_model, make_setup, trainable_baselines
from vlbench.training.seeding import data_generator, seed_everything


class _Recorded(nn.Module):
    """Wraps a vlbench model for ``Trainer``: keyword batch in, ``{"loss", "logits"}`` out; keeps each step's loss."""

    accepts_loss_kwargs = False  # the task's loss is a per-batch mean; Trainer must not rescale it

    def __init__(self, model: nn.Module, task, losses: list, orders: list) -> None:
        super().__init__()
        self.model, self.task, self.losses, self.orders = model, task, losses, orders

    def forward(self, **batch):
        """Logits and the task's loss for one batch."""
        batch.pop("num_items_in_batch", None)
        logits = self.model(batch)
        loss = self.task.loss(logits, batch)
        if self.training:
            self.losses.append(loss.detach())  # no host sync here; read after training
            self.orders.append(batch["index"][:4].tolist())
        return {"loss": loss, "logits": logits}


def _record_vlbench(task, losses: list, orders: list):
    """Make ``task.loss`` keep each training step's loss without synchronising."""
    original = task.loss

    def loss(outputs, batch):
        value = original(outputs, batch)
        if torch.is_grad_enabled():
            losses.append(value.detach())
            orders.append(batch["index"][:4].tolist())
        return value

    task.loss = loss
    return original


def _hf_run(setup, name: str, seed: int, modalities) -> tuple[float, list, list]:
    """Train with ``transformers.Trainer``; returns examples/s, per-step losses and batch heads."""
    from torch.utils.data import DataLoader
    from transformers import Trainer, TrainingArguments

    config = setup.config(name)
    cfg = config.training
    losses: list = []
    orders: list = []
    model, _ = fresh_model(setup, name, seed)
    wrapped = _Recorded(model, setup.task, losses, orders)
    n = setup.task.num_examples("train")
    task = setup.task

    class SameOrderTrainer(Trainer):
        def get_train_dataloader(self):
            # vlbench's loader: same seeded shuffle and collate, so both see identical batches
            return DataLoader(range(n), batch_size=cfg.batch_size, shuffle=True, generator=data_generator(seed),
                              collate_fn=lambda idx: task.collate("train", list(idx), modalities))

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=setup.steps, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=int(round(setup.steps * cfg.warmup_ratio)),
            lr_scheduler_type="linear", max_grad_norm=cfg.grad_clip or 0.0, optim="adamw_torch", seed=seed,
            bf16=setup.precision == "bf16", use_cpu=setup.device.type == "cpu", report_to=[], save_strategy="no",
            eval_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = SameOrderTrainer(model=wrapped, args=args)
        seed_everything(seed)
        start = time.perf_counter()
        trainer.train()
        if setup.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return len(losses) * cfg.batch_size / seconds, [float(v) for v in losses], orders


def _vlbench_run(setup, name: str, seed: int) -> tuple[float, list, list]:
    """Train with vlbench's ``fit``; returns examples/s (validation excluded), per-step losses and batch heads."""
    from vlbench.training.trainer import fit

    config = setup.config(name)
    losses: list = []
    orders: list = []
    model, modalities = fresh_model(setup, name, seed)
    original = _record_vlbench(setup.task, losses, orders)
    try:
        seed_everything(seed)
        start = time.perf_counter()
        result = fit(model, setup.task, config.training, accelerator=setup.accelerator, seed=seed, modalities=modalities)
        if setup.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start - result.eval_seconds
    finally:
        setup.task.loss = original
    return result.train_examples / seconds, [float(v) for v in losses], orders


def main() -> None:
    """Run both per baseline and print speed, ratio and the loss curves side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=10, help="print every N-th step of the loss curves")
    args = parser.parse_args()
    baselines = args.baseline or trainable_baselines("vqa")
    setup = make_setup(args, baselines)
    print(f"batch={args.batch_size} steps={args.steps} threads={args.threads} precision={setup.precision} "
          f"device={setup.device} seed={args.seed}")
    summary = []
    for name in baselines:
        warm, modalities = fresh_model(setup, name)
        bare_loop(setup, warm, fixed_batches(setup, modalities, 4), min(10, args.steps), 1e-4)  # warm up kernels
        ours, our_losses, our_order = _vlbench_run(setup, name, args.seed)
        theirs, hf_losses, hf_order = _hf_run(setup, name, args.seed, modalities)
        steps = min(len(our_losses), len(hf_losses))
        diff = max((abs(a - b) for a, b in zip(our_losses, hf_losses)), default=float("nan"))
        print(f"\n{name}: vlbench {ours:.1f} ex/s, HF Trainer {theirs:.1f} ex/s, ratio vlbench/Trainer = "
              f"{ours / theirs:.3f}; same batches: {our_order[:steps] == hf_order[:steps]}")
        print(f"  {'step':>5} {'vlbench loss':>13} {'Trainer loss':>13} {'abs diff':>9}")
        for i in range(0, steps, max(args.every, 1)):
            print(f"  {i + 1:5d} {our_losses[i]:13.5f} {hf_losses[i]:13.5f} {abs(our_losses[i] - hf_losses[i]):9.5f}")
        if steps and (steps - 1) % max(args.every, 1):
            i = steps - 1
            print(f"  {i + 1:5d} {our_losses[i]:13.5f} {hf_losses[i]:13.5f} {abs(our_losses[i] - hf_losses[i]):9.5f}")
        print(f"  max abs loss difference over {steps} steps: {diff:.5f}", flush=True)
        summary.append((name, ours / theirs, diff))
    print(f"\n{'baseline':<20} {'vlbench/Trainer':>16} {'max |Δloss|':>12}")
    for name, ratio, diff in summary:
        print(f"{name:<20} {ratio:16.3f} {diff:12.5f}")


if __name__ == "__main__":
    main()
