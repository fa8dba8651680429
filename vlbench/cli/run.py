"""``vlbench run``: fine-tune and score baselines on a task, then print the comparison table."""

from __future__ import annotations

import math
import traceback
from pathlib import Path
from typing import Optional

import typer

from vlbench.cli.app import app, debug_enabled, err_console, load_plugins, path_arg, wide_console
from vlbench.cli.robustness import parse_suites
from vlbench.errors import VLBenchError
from vlbench.specs import DEFAULT_EMAP_ITEMS

__all__ = ["run", "parse_seeds"]


def parse_seeds(text: Optional[str]) -> Optional[list[int]]:
    """``"0,1,2"`` or ``"0-4"`` -> a list of ints within numpy's seed range; anything else is one clear error."""
    from vlbench.specs import MAX_SEED, MAX_SEEDS

    if text is None:
        return None
    usage = f"--seeds {text[:40]!r}: expected integers like 0,1,2 or a range like 0-4"
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo_text, dash, hi_text = part.partition("-")
        # ASCII digits only: '²' passes str.isdigit() but not int()
        if not all(t.strip().isascii() and t.strip().isdigit() and len(t.strip()) <= 20
                   for t in ((lo_text, hi_text) if dash else (part,))):
            raise VLBenchError(f"{usage} (seeds are whole numbers 0..{MAX_SEED}).")
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if lo > MAX_SEED or hi > MAX_SEED:
            raise VLBenchError(f"{usage}: seed {max(lo, hi)} is above {MAX_SEED}, the largest seed numpy accepts.")
        if hi < lo:
            raise VLBenchError(f"{usage}: the range {part} runs backwards; write {hi}-{lo}.")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise VLBenchError(f"{usage}: that is more than {MAX_SEEDS} seeds in one command.")
        seeds.extend(range(lo, hi + 1))
    if not seeds or len(set(seeds)) != len(seeds):
        raise VLBenchError(f"{usage}: give at least one seed and no seed twice.")
    return seeds


def _check_lr(lr: Optional[float]) -> None:
    from vlbench.specs import MAX_LR

    if lr is not None and not (math.isfinite(lr) and 0 < lr <= MAX_LR):
        raise VLBenchError(f"--lr {lr:g}: give a finite learning rate above 0 and at most {MAX_LR:g}, e.g. --lr 5e-4.")


@app.command("run")
def run(
    task: str = typer.Option(..., "--task", "-t", help="Task name (see `vlbench list tasks`) or a task YAML path."),
    baseline: Optional[list[str]] = typer.Option(None, "--baseline", "-b", help="Baseline name or YAML path; repeatable."),
    all_baselines: bool = typer.Option(False, "--all-baselines", help="Run every baseline that supports the task."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="NAME[:PATH]; default: the task spec's dataset."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the spec's)."),
    results_dir: Path = typer.Option(Path("runs"), "--results-dir", parser=path_arg,
        help="Where run records are written."),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", min=0,
        help="Training epochs. Early stopping (training.patience) counts validation passes, not epochs: one after every "
        "training.eval_every_epochs epochs and after the last.",
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1),
    min_steps: Optional[int] = typer.Option(
        None, "--min-steps", min=1,
        help="Train at least this many optimizer steps: small training sets (--train-fraction, --k-shot) get more "
        "epochs, validated as often as --epochs asks (so training.patience counts the same validation passes).",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    precision: Optional[str] = typer.Option(
        None, "--precision",
        help="Training precision: auto (bf16 where the device computes it natively, fp16 on other CUDA GPUs), "
        "fp32, bf16 or fp16 (CUDA, with gradient scaling).",
    ),
    grad_accum_steps: Optional[int] = typer.Option(
        None, "--grad-accum-steps", min=1, help="Micro-batches per optimizer step (effective batch = batch size x this)."
    ),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model for training."),
    deterministic: Optional[bool] = typer.Option(
        None, "--deterministic/--no-deterministic", help="Torch deterministic algorithms (see docs/training.md)."
    ),
    tf32: Optional[bool] = typer.Option(None, "--tf32/--no-tf32", help="TF32 matmuls while training on CUDA (default on)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="DataLoader worker processes."),
    data_on_device: Optional[bool] = typer.Option(
        None, "--data-on-device/--no-data-on-device",
        help="Keep the training and validation splits on the device and gather batches there (default: when "
        "they fit; see docs/training.md).",
    ),
    checkpoint_every_steps: Optional[int] = typer.Option(
        None, "--checkpoint-every-steps", min=0, help="Checkpoint every N optimizer steps besides epoch ends (0: epoch ends only)."
    ),
    emap: bool = typer.Option(
        False, "--emap",
        help="After testing, score the additive projection of each image-reading model's outputs (EMAP, Hessel & Lee "
        f"2020) on {DEFAULT_EMAP_ITEMS} seeded test items: N² forward passes (250,000 for 500 items), batched by the "
        "evaluation batch size. See docs/results.md.",
    ),
    emap_items: Optional[int] = typer.Option(
        None, "--emap-items", min=2, max=100_000, help=f"Test items EMAP uses (implies --emap; default {DEFAULT_EMAP_ITEMS})."
    ),
    check_eval_invariance: bool = typer.Option(
        False, "--check-eval-invariance",
        help="After testing, score the test split again one example per batch and record whether every metric and "
        "item score is the same as at the evaluation batch size (one more test pass, unbatched).",
    ),
    robustness: bool = typer.Option(
        False, "--robustness",
        help="After testing, score the trained model under the evaluation suites (corrupted images at 5 severities, "
        "perturbed questions, PGD at 1, 2 and 4/255) and record them: 31 more test passes and 3 attacked ones (each "
        "about 2 x steps forward and backward passes). See docs/robustness.md.",
    ),
    robustness_suites: Optional[str] = typer.Option(
        None, "--robustness-suites", help="Only these suites, comma-separated: corruptions, text, attack (implies --robustness).",
    ),
    keep_model: bool = typer.Option(
        False, "--keep-model",
        help="Keep the trained weights beside each record (seed-N.weights.safetensors) for `vlbench robustness` later.",
    ),
    device: str = typer.Option("auto", "--device", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a spec field: key.path=value; repeatable."),
    force: bool = typer.Option(False, "--force", help="Run again even when a record with the same config exists."),
    strict_images: bool = typer.Option(
        False, "--strict-images",
        help="An unreadable or truncated image is an error instead of being skipped (datasets read from files).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for runs that another vlbench process is running (default: leave them to it)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Dataset cache (default $VLBENCH_CACHE or ~/.cache/vlbench)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra types; repeatable."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-run lines."),
    executor: str = typer.Option(
        "local", "--executor", help="local (this process), ray (a Ray task per run) or slurm (a job per run, submitit)."
    ),
    cpus_per_run: Optional[float] = typer.Option(None, "--cpus-per-run", help="CPUs reserved per run (ray, slurm)."),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="GPUs reserved per run (ray, slurm)."),
    train_fraction: Optional[str] = typer.Option(
        None, "--train-fraction", help="Comma-separated fractions of the training images, e.g. 0.01,0.1,1: one run "
        "per fraction on nested, seeded image subsets (records under DIR/fraction-F/); see `vlbench efficiency`."
    ),
    k_shot: Optional[str] = typer.Option(
        None, "--k-shot", help="Comma-separated k, e.g. 1,4,8: one run per k on k seeded examples per answer "
        "(k images for tasks without answers), records under DIR/k-shot-K/; see `vlbench efficiency --k-shot`."
    ),
) -> None:
    """Fine-tune and score baselines on a task under fixed seeds, then print the comparison table."""
    load_plugins(plugin)
    from vlbench.results.records import ensure_writable, load_records
    from vlbench.results.table import aggregate, render
    from vlbench.distributed import is_main
    from vlbench.executors import execute, make_options, split_executor_overrides
    from vlbench.plan import RunRequest, select_baselines
    from vlbench.specs import load_task_spec

    spec_overrides, executor_settings = split_executor_overrides(list(set_ or []))
    if strict_images:  # shorthand for the file datasets' data option
        spec_overrides.append("task.data.strict_images=true")
    executor_options = make_options(executor, executor_settings, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    seed_list = parse_seeds(seeds)
    if dataset is not None and not dataset.strip():  # "" would silently mean the spec's own dataset
        raise VLBenchError("--dataset '': name a dataset, e.g. --dataset vqav2:/data/vqav2, or leave the flag out "
                           "to use the task's own.")
    _check_lr(lr)
    suites = parse_suites(robustness_suites, "--robustness-suites")
    robustness_block = {"suites": suites} if suites else ({} if robustness else None)
    sizes, rule = None, "fraction"
    if train_fraction is not None and k_shot is not None:
        raise VLBenchError("give --train-fraction or --k-shot, not both.")
    if train_fraction is not None:
        from vlbench.protocols.efficiency import parse_fractions

        sizes = parse_fractions(train_fraction)
    if k_shot is not None:
        from vlbench.protocols.efficiency import parse_shots

        sizes, rule = parse_shots(k_shot), "k_shot"
    task_spec = load_task_spec(task)
    baselines = select_baselines(task_spec, list(baseline or []), all_baselines, dataset=dataset,
                                 echo=None if quiet else (lambda msg: wide_console().print(msg, markup=False)))
    results_dir = ensure_writable(results_dir)
    request = RunRequest(
        task=task_spec,
        baselines=baselines,
        results_dir=results_dir,
        seeds=seed_list,
        dataset=dataset,
        overrides=spec_overrides,
        training_overrides={"epochs": epochs, "max_steps": max_steps, "min_steps": min_steps, "batch_size": batch_size, "lr": lr,
                            "precision": precision, "grad_accum_steps": grad_accum_steps, "compile": compile_,
                            "deterministic": deterministic, "tf32": tf32, "num_workers": num_workers, "data_on_device": data_on_device,
                            "checkpoint_every_steps": checkpoint_every_steps,
                            "emap_items": emap_items or (DEFAULT_EMAP_ITEMS if emap else None),
                            "check_eval_invariance": check_eval_invariance or None,
                            "robustness": robustness_block, "keep_model": keep_model or None},
        device=device,
        force=force,
        cache_dir=cache_dir,
        quiet=quiet,
        wait=wait,
    )
    console = wide_console()

    def on_error(message: str, exc: BaseException) -> None:
        if debug_enabled():
            traceback.print_exception(exc)
        err_console.print(f"error: {message}", markup=False)

    echo = (lambda msg: None) if quiet else (lambda msg: console.print(msg, markup=False))
    warn = lambda msg: err_console.print(msg, markup=False)  # noqa: E731

    def launch(part):
        return execute(part, executor_options, plugins=list(plugin or []), echo=echo, on_error=on_error, warn=warn)

    if sizes is not None:
        from vlbench.protocols.efficiency import print_efficiency, run_fractions

        outcome = run_fractions(request, sizes, launch, rule)
        if is_main():
            print_efficiency(results_dir, task_spec.name, None, task_spec.reference_baseline, None, console, rule)
        if outcome.failed or outcome.busy:
            raise typer.Exit(1)
        return
    outcome = launch(request)
    names = {b.name for b in baselines}
    # failed runs stay in: the table lists them as failed
    dataset_name = (dataset or task_spec.dataset).partition(":")[0]
    # this task on this dataset, as the latest runs left it (records kept for earlier configs are left
    # to `vlbench table`)
    records = [r for r in load_records(results_dir)
               if r["task"] == task_spec.name and r["dataset"] == dataset_name and r["baseline"] in names
               and ".cfg-" not in Path(r.get("_path", "")).name]
    if records and is_main():  # under accelerate launch / torchrun one process prints the table
        console.print(render(aggregate(records), "rich"))
    if outcome.failed or outcome.busy:  # each was reported once as it happened; the code tells scripts
        raise typer.Exit(1)
