"""Run a continual sequence: every (baseline, strategy, seed) trains one model stage after stage.

After each stage the model is scored on every stage's test split (a row of the accuracy matrix) and the
stage is written as an ordinary run record (its own test block, plus a ``continual`` block). Each
(baseline, strategy, seed) also gets a summary JSON with the matrix, the random-initialisation scores and
ACC, BWT, FWT and forgetting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vlbench.errors import VLBenchError
from vlbench.io import atomic_write_json, read_json
from vlbench.protocols.continual.sequence import ContinualSequence, stage_view
from vlbench.protocols.continual.stage_run import SequenceContext, run_one_sequence, sequence_dir
from vlbench.protocols.continual.strategies import STRATEGIES, StrategySettings
from vlbench.results.records import safe_name

__all__ = ["ContinualRequest", "run_continual", "summary_path", "sequence_dir"]


@dataclass
class ContinualRequest:
    """What ``vlbench continual`` was asked for."""

    sequence: ContinualSequence
    baselines: list[str]
    strategies: list[str]
    results_dir: Path
    seeds: Optional[list[int]] = None
    overrides: list[str] = field(default_factory=list)
    training_overrides: dict[str, Any] = field(default_factory=dict)
    settings: StrategySettings = field(default_factory=StrategySettings)
    device: str = "auto"
    cache_dir: Optional[Path] = None
    force: bool = False
    quiet: bool = False


def summary_path(results_dir: Path, sequence: str, baseline: str, strategy: str, seed: int) -> Path:
    """The summary JSON of one (baseline, strategy, seed) (named so record loaders do not take it for a record)."""
    return sequence_dir(results_dir, sequence) / "summaries" / f"{safe_name(baseline)}.{strategy}.s{seed}.json"


def _share_label_space(union: Any, stage: Any) -> None:
    # a stage's own training rows would give it a smaller answer list: every stage classifies over the union's
    for attr in ("answers", "answer_index"):
        if hasattr(union, attr):
            setattr(stage, attr, getattr(union, attr))


def run_continual(request: ContinualRequest, *, echo: Callable[[str], None] = print) -> list[Path]:
    """Train and score every (baseline, strategy, seed) on the sequence; returns the summary files."""
    from vlbench.models.base import FittedModel
    from vlbench.models.pretrained import WORD_LEVEL, load_tokenizer
    from vlbench.registry import MODELS, TASK_TYPES
    from vlbench.data.loading import load_dataset
    from vlbench.plan import RunRequest, drop_unavailable, resolve_runs
    from vlbench.specs import load_baseline_spec, load_task_spec
    from vlbench.training.device import get_accelerator, resolve_precision

    unknown = [s for s in request.strategies if s not in STRATEGIES]
    if unknown:
        raise VLBenchError(f"--strategy {unknown[0]!r}: use one of {', '.join(STRATEGIES)}.")
    sequence = request.sequence
    task_spec = load_task_spec(sequence.task)
    baselines = [load_baseline_spec(name) for name in request.baselines]
    for spec in baselines:
        if task_spec.name not in spec.tasks:
            raise VLBenchError(f"baseline {spec.name!r} does not support task {task_spec.name!r}.")
    run_request = RunRequest(task=task_spec, baselines=baselines, results_dir=request.results_dir,
                             overrides=[*sequence.set, *request.overrides], training_overrides=request.training_overrides)
    configs = drop_unavailable(resolve_runs(run_request), echo)
    for config in configs:
        if config.task.train_subset is not None:
            raise VLBenchError("continual sequences do not take task.train_subset; select rows with stage where: filters.")
    first = configs[0]
    dataset = load_dataset(first.dataset, first.task.data, request.cache_dir, request.quiet)
    splits = [first.task.splits.train, first.task.splits.validation, first.task.splits.test]
    task_type = TASK_TYPES.get(first.task.type)
    union = task_type(first.task, stage_view(dataset, sequence.stages, splits, "all stages"))
    stage_tasks = [task_type(first.task, stage_view(dataset, [s], splits, s.name)) for s in sequence.stages]
    for task in stage_tasks:
        _share_label_space(union, task)
    accelerator = get_accelerator(request.device)
    for config in configs:
        resolve_precision(config.training.precision, accelerator.device)
        if issubclass(MODELS.get(config.baseline.model), FittedModel):
            raise VLBenchError(f"baseline {config.baseline.name!r} is fitted by counting, not trained; continual "
                               f"learning needs a trainable baseline.")
    context = SequenceContext(sequence=sequence, dataset=dataset, union=union, stage_tasks=stage_tasks,
                              tokenizer=None, tokenizer_source=None, accelerator=accelerator,
                              results_dir=Path(request.results_dir), cache_dir=request.cache_dir, quiet=request.quiet)
    tokenizers: dict[str, Any] = {}
    written = []
    for config in configs:
        # each baseline reads text with the tokenizer its config names; the stages are encoded for it
        source = config.baseline.tokenizer or WORD_LEVEL
        if source not in tokenizers:
            tokenizers[source] = load_tokenizer(source, union.training_texts())
        if context.tokenizer_source != source:
            for task in (union, *stage_tasks):
                task.prepare(tokenizers[source])
            context.tokenizer, context.tokenizer_source = tokenizers[source], source
        seeds = request.seeds if request.seeds is not None else config.training.seeds
        for strategy in request.strategies:
            for seed in seeds:
                path = summary_path(request.results_dir, sequence.name, config.baseline.name, strategy, seed)
                digest = context.digest(config, strategy, request.settings, "summary")
                if path.is_file() and not request.force:
                    try:
                        previous = read_json(path).get("config_hash")
                    except (OSError, ValueError):
                        previous = None
                    if previous == digest:
                        echo(f"skip {config.baseline.name} {strategy} seed {seed}: {path} exists (use --force)")
                        written.append(path)
                        continue
                if path.is_file():  # a summary of another config is kept beside the new one, never replaced
                    try:
                        earlier = read_json(path).get("config_hash") or "unknown"
                    except (OSError, ValueError):
                        earlier = "unreadable"
                    if earlier != digest:
                        path.replace(path.with_name(f"{path.stem}.cfg-{earlier}{path.suffix}"))
                start = time.perf_counter()
                summary = run_one_sequence(context, config, strategy, seed, request.settings, digest, echo)
                summary["timing"] = {"wall_seconds": time.perf_counter() - start}
                atomic_write_json(path, summary)
                written.append(path)
                metrics = summary["metrics"]
                bwt = metrics["backward_transfer"]
                echo(f"{config.baseline.name} {strategy} seed {seed}: ACC {metrics['average_accuracy']:.2f}"
                     + (f", BWT {bwt:+.2f}" if bwt is not None else "") + f" -> {path}")
    return written
