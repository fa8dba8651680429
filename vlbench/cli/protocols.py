"""``vlbench efficiency`` (metric against labelled examples) and ``vlbench continual`` (learning in sequence)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from vlbench.cli.app import app, load_plugins, path_arg, wide_console
from vlbench.protocols.efficiency import print_efficiency

__all__ = ["efficiency", "continual"]


@app.command("efficiency")
def efficiency(
    results_dir: Path = typer.Argument(..., parser=path_arg,
        help="Folder of run records made with `vlbench run --train-fraction`."),
    task: str = typer.Option(..., "--task", "-t", help="Task name as written in the records."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Test metric to plot (default: the task's primary)."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Text-only baseline whose full-data score the others must match (default: the task spec's)."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", parser=path_arg,
        help="PNG to write (default: DIR/efficiency-TASK.png)."),
    k_shot: bool = typer.Option(False, "--k-shot", help="Read the k-shot records (vlbench run --k-shot) instead of fractions."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra types; repeatable."),
) -> None:
    """Metric against labelled training examples per baseline (mean ± std over seeds), its plot and the gain."""
    load_plugins(plugin)
    if reference is None:
        from vlbench.errors import VLBenchError
        from vlbench.specs import load_task_spec

        try:
            reference = load_task_spec(task).reference_baseline
        except VLBenchError:
            reference = "text-bert"
    print_efficiency(results_dir, task, metric, reference, plot, wide_console(), "k_shot" if k_shot else "fraction")


@app.command("continual")
def continual(
    sequence: str = typer.Option(..., "--sequence", help="A shipped sequence name (shapes-families) or a sequence YAML file."),
    baseline: list[str] = typer.Option(..., "--baseline", "-b", help="Trainable baseline name or YAML path; repeatable."),
    strategy: Optional[list[str]] = typer.Option(
        None, "--strategy", help="naive, joint, ewc, replay, heads or isolated; repeatable (default: all six)."
    ),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (default: the spec's)."),
    results_dir: Path = typer.Option(Path("runs-continual"), "--results-dir", parser=path_arg,
        help="Where records, summaries and plots go."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=0, help="Epochs per stage."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps per stage."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto, fp32 or bf16."),
    ewc_lambda: float = typer.Option(1000.0, "--ewc-lambda", min=0.0, help="EWC penalty strength lambda."),
    fisher_samples: int = typer.Option(256, "--fisher-samples", min=1, help="Training examples per stage for the Fisher."),
    memory_size: int = typer.Option(500, "--memory-size", min=1, help="Replay memory capacity (examples, all stages)."),
    replay_batch_size: Optional[int] = typer.Option(None, "--replay-batch-size", min=1, help="Replayed examples per step (default: the batch size)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a spec field: key.path=value; repeatable."),
    force: bool = typer.Option(False, "--force", help="Run again even when a summary with the same config exists."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg, help="Dataset cache."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra types; repeatable."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-stage lines."),
) -> None:
    """Train one model stage after stage; score every stage after each; report ACC, BWT, FWT, forgetting, heat maps."""
    load_plugins(plugin)
    from vlbench.cli.run import parse_seeds
    from vlbench.protocols.continual.loop import ContinualRequest, run_continual, sequence_dir
    from vlbench.protocols.continual.report import write_report
    from vlbench.protocols.continual.sequence import load_sequence
    from vlbench.protocols.continual.strategies import STRATEGIES, StrategySettings
    from vlbench.results.records import ensure_writable

    spec = load_sequence(sequence)
    request = ContinualRequest(
        sequence=spec, baselines=list(baseline), strategies=list(strategy or STRATEGIES), results_dir=ensure_writable(results_dir),
        seeds=parse_seeds(seeds), overrides=list(set_ or []),
        training_overrides={"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "precision": precision},
        settings=StrategySettings(ewc_lambda=ewc_lambda, fisher_samples=fisher_samples, memory_size=memory_size,
                                  replay_batch_size=replay_batch_size),
        device=device, cache_dir=cache_dir, force=force, quiet=quiet,
    )
    console = wide_console()
    run_continual(request, echo=(lambda msg: None) if quiet else (lambda msg: console.print(msg, markup=False)))
    table, plots = write_report(sequence_dir(results_dir, spec.name))
    console.print(table, markup=False)
    for plot in plots:
        console.print(f"heat map -> {plot}", markup=False)


@app.command("visual-prefix")
def visual_prefix(
    out: Path = typer.Option(..., "--out", parser=path_arg,
        help="Folder to save the checkpoint and processor in (save_pretrained)."),
    task: str = typer.Option("vqa", "--task", "-t", help="Task whose prompt templates the texts are written with."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="NAME[:PATH] with vqa and captions tables (default: the task's)."),
    seed: int = typer.Option(0, "--seed", min=0),
    lm_epochs: int = typer.Option(2, "--lm-epochs", min=1, help="Epochs of the text-only language model."),
    prefix_epochs: int = typer.Option(2, "--prefix-epochs", min=1, help="Epochs of the visual prefix (language model frozen)."),
    max_shots: int = typer.Option(4, "--max-shots", min=0, help="Most solved examples before a question in the texts."),
    train_images: Optional[int] = typer.Option(None, "--train-images", min=1, help="Use only the first N training images."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a task spec field: key.path=value; repeatable."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg, help="Dataset cache."),
) -> None:
    """Build an offline image-text-to-text checkpoint (Frozen-style) for the prompted baseline's zero/few-shot runs."""
    import torch

    from vlbench.errors import SpecError
    from vlbench.protocols.visual_prefix import PrefixSettings, build_visual_prefix_model
    from vlbench.data.loading import load_dataset
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out}: exists and is not a folder.")
    if threads:
        torch.set_num_threads(threads)
    spec = load_task_spec(task)
    config = resolve_run_config(spec, load_baseline_spec("prior"), dataset=dataset, overrides=list(set_ or []))
    if config.task.prompt is None:
        raise SpecError(f"task {spec.name!r} has no `prompt:` block to write the texts with.")
    data = load_dataset(config.dataset, config.task.data, cache_dir, quiet=True)
    missing = [kind for kind in ("vqa", "captions") if kind not in data.tables]
    if missing:
        raise SpecError(f"dataset {data.name!r} has no {missing[0]!r} table; the visual prefix model needs "
                        "questions (vqa) and captions of the same training images.")
    settings = PrefixSettings(lm_epochs=lm_epochs, prefix_epochs=prefix_epochs, max_shots=max_shots,
                              train_images=train_images)
    console = wide_console()
    folder = build_visual_prefix_model(data, config.task.prompt, out, settings, seed=seed,
                                       say=lambda msg: console.print(msg, markup=False),
                                       split=config.task.splits.train)
    console.print(f"saved -> {folder} (use it as `pretrained:` of a `model: prompted` baseline)", markup=False)
