"""Training throughput of vlbench's trainer against a bare PyTorch loop on the same model, data and batch size.

    python benchmarks/train_overhead.py [--baseline vilt] [--steps 150] [--batch-size 64] [--precision auto]

Both loops train the same freshly initialised model (same seed) for the same number of steps. The bare
loop gets every advantage: the whole training set pre-collated into dense tensors, no validation, no
progress bar. It prints examples/second for both and the ratio vlbench / bare (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from vlbench import builtins  # noqa: F401
from vlbench.models.base import BuildContext, build_model
from vlbench.registry import MODELS, TASK_TYPES
from vlbench.runner import _TokenizerCache, load_dataset
from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config
from vlbench.training.device import autocast, get_accelerator, resolve_precision
from vlbench.training.optim import make_optimizer, make_scheduler
from vlbench.training.seeding import seed_everything
from vlbench.training.trainer import fit


def _fresh_model(task, tokenizers, config, seed):
    seed_everything(seed)
    tok = tokenizers.get(config.baseline.tokenizer)
    context = BuildContext(config.task.type, tok, task.options.image_size, task.options.max_text_length,
                           task.build_context_extras())
    encoder = build_model(config.baseline.model, config.baseline.config, None, context, config.baseline.name)
    return task.wrap(encoder)


def bare_loop(model, task, modalities, steps: int, batch_size: int, lr: float, warmup: int, precision: str) -> float:
    """Examples/second of a minimal loop over pre-collated tensors."""
    n = task.num_examples("train")
    full = task.collate("train", list(range(n)), modalities)  # everything collated once, up front
    optimizer = make_optimizer(model, lr, 0.01)
    scheduler = make_scheduler(optimizer, steps, 0.1)
    generator = torch.Generator().manual_seed(0)
    model.train()

    def step(index):
        batch = {k: v.index_select(0, index) for k, v in full.items()}
        with autocast(precision, torch.device("cpu")):
            logits = model(batch)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["targets"]) * batch["targets"].shape[1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

    order = torch.randperm(n, generator=generator)
    for i in range(warmup):
        step(order[(i * batch_size) % n:][:batch_size])
    start = time.perf_counter()
    done = 0
    for i in range(steps):
        lo = (i * batch_size) % max(n - batch_size, 1)
        index = order[lo:lo + batch_size]
        step(index)
        done += index.numel()
    return done / (time.perf_counter() - start)


def main() -> None:
    """Measure and print both throughputs and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="vilt")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="training precision of both loops (auto: bf16 where the CPU computes it natively)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task_spec = load_task_spec("vqa")
    config = resolve_run_config(task_spec, load_baseline_spec(args.baseline),
                                training_overrides={"batch_size": args.batch_size, "max_steps": args.steps,
                                                    "epochs": 1000, "patience": 0, "precision": args.precision})
    dataset = load_dataset(config.dataset, config.task.data, None, quiet=True)
    task = TASK_TYPES.get(config.task.type)(config.task, dataset)
    tokenizers = _TokenizerCache(task)
    modalities = tuple(MODELS.get(config.baseline.model).modalities)
    accelerator = get_accelerator("cpu")
    precision = resolve_precision(args.precision, accelerator.device)

    # vlbench validates once, at the end; that pass is timed separately and reported beside the ratio
    warm = _fresh_model(task, tokenizers, config, 0)
    bare_loop(warm, task, modalities, 10, args.batch_size, config.training.lr, 5, precision)  # warm up kernels and caches

    model = _fresh_model(task, tokenizers, config, 0)
    result = fit(model, task, config.training, accelerator=accelerator, seed=0, modalities=modalities)
    vlbench_eps = result.train_examples / (result.train_seconds - result.eval_seconds)
    with_eval_eps = result.train_examples / result.train_seconds

    model = _fresh_model(task, tokenizers, config, 0)
    bare_eps = bare_loop(model, task, modalities, args.steps, args.batch_size, config.training.lr, 0, precision)

    print(f"baseline={args.baseline} batch={args.batch_size} steps={args.steps} threads={args.threads} precision={precision}")
    print(f"vlbench trainer : {vlbench_eps:8.1f} train examples/s ({with_eval_eps:.1f} counting its validation pass)")
    print(f"bare torch loop : {bare_eps:8.1f} train examples/s")
    print(f"ratio vlbench/bare = {vlbench_eps / bare_eps:.3f}")


if __name__ == "__main__":
    main()
