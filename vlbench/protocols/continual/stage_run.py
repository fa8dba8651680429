"""One model through one sequence under one strategy: train each stage, score every stage, write records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vlbench.errors import VLBenchError
from vlbench.io import atomic_write_json
from vlbench.protocols.continual.metrics import summarize
from vlbench.protocols.continual.sequence import ContinualSequence
from vlbench.protocols.continual.strategies import StrategySettings, make_strategy
from vlbench.results.records import safe_name

__all__ = ["SequenceContext", "run_one_sequence", "sequence_dir", "stage_record_dir"]


@dataclass
class SequenceContext:
    """What every run of one sequence shares: data, the stage tasks, the tokenizer, the device, where to write."""

    sequence: ContinualSequence
    dataset: Any
    union: Any
    stage_tasks: list[Any]
    tokenizer: Any
    tokenizer_source: Optional[str]
    accelerator: Any
    results_dir: Path
    cache_dir: Optional[Path]
    quiet: bool

    def digest(self, config: Any, strategy: str, settings: StrategySettings, stage: Any) -> str:
        """Config hash of one stage record (or of the summary): the run's config plus the sequence and strategy."""
        from vlbench.models.pretrained import content_identities
        from vlbench.specs import config_hash
        from vlbench.tasks.preflight import code_identity
        from vlbench.training.device import resolve_precision

        extra = {"data": self.dataset.fingerprint,  # the precision the device runs, not "auto"
                 "precision": resolve_precision(config.training.precision, self.accelerator.device),
                 "content": content_identities(config),
                 "continual": {"sequence": self.sequence.model_dump(mode="json"), "strategy": strategy,
                               "settings": settings.as_dict(strategy), "stage": stage}}
        task_code = code_identity(config)
        if task_code:  # as vlbench.plan.run_digest does
            extra["task_code"] = task_code
        return config_hash(config, extra)


def sequence_dir(results_dir: Path, sequence: str) -> Path:
    """Where one sequence's records, summaries and plots live."""
    return Path(results_dir) / safe_name(sequence)


def stage_record_dir(results_dir: Path, sequence: str, strategy: str, index: int, stage: str) -> Path:
    """The results folder one stage's ordinary records go under (a folder per sequence, strategy and stage)."""
    return sequence_dir(results_dir, sequence) / strategy / f"stage-{index + 1}-{safe_name(stage)}"


def run_one_sequence(ctx: SequenceContext, config: Any, strategy_name: str, seed: int, settings: StrategySettings,
                     digest: str, echo: Callable[[str], None]) -> dict[str, Any]:
    """Train ``config``'s model through the sequence with one strategy; returns the summary (records written)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vlbench.data.base import default_cache_dir
    from vlbench.models.pretrained import resolve_pretrained
    from vlbench.peft.assemble import assemble
    from vlbench.registry import MODELS
    from vlbench.training.trainer import fit

    model_cls = MODELS.get(config.baseline.model)
    reads_text = "text" in model_cls.modalities
    assembled = assemble(config, seed, ctx.union, ctx.tokenizer if reads_text else None,
                         pretrained=resolve_pretrained(config.baseline.pretrained),
                         tokenizer_source=ctx.tokenizer_source if reads_text else None,
                         data_fingerprint=ctx.dataset.fingerprint,
                         cache_dir=Path(ctx.cache_dir) if ctx.cache_dir else default_cache_dir())
    if assembled.features is not None:
        raise VLBenchError(f"baseline {config.baseline.name!r} caches frozen features, which a continual sequence "
                           f"cannot share across stages; set baseline.peft.cache_features=false.")
    device = ctx.accelerator.device
    model = assembled.model.to(device)
    modalities = assembled.modalities
    cfg = config.training
    stages = ctx.sequence.stages
    strategy = make_strategy(strategy_name, model, ctx.stage_tasks, modalities, device, settings, cfg.batch_size, seed)
    primary = config.task.primary_metric
    random_init = [float(strategy.evaluate(j, "test", cfg.eval_batch_size).primary) for j in range(len(stages))]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        disable=ctx.quiet)
    matrix: list[list[float]] = []
    stage_files: list[str] = []
    train_seconds = 0.0
    plan = [("all", None)] if strategy_name == "joint" else [(s.name, i) for i, s in enumerate(stages)]
    with progress:
        for row_index, (stage_name, index) in enumerate(plan):
            start = time.perf_counter()
            label = f"{config.baseline.name} {strategy_name} s{seed} {stage_name}"
            if index is None:
                train_task = ctx.union
            else:
                strategy.before_stage(index)
                train_task = strategy.training_task(index)
            result = fit(model, train_task, cfg, accelerator=ctx.accelerator, seed=seed, modalities=modalities,
                         progress=progress, label=label)
            if index is not None:
                strategy.after_stage(index)
            train_seconds += result.train_seconds
            scores = [strategy.evaluate(j, "test", cfg.eval_batch_size) for j in range(len(stages))]
            matrix.append([float(s.primary) for s in scores])
            own = index if index is not None else None
            path = _write_stage_record(ctx, config, strategy_name, seed, settings, row_index, stage_name, own, scores,
                                       result, model, modalities, time.perf_counter() - start)
            stage_files.append(str(path))
            echo(f"{label}: " + ", ".join(f"{s.name} {v:.1f}" for s, v in zip(stages, matrix[-1])))
    if strategy_name == "joint":
        metrics = {"average_accuracy": sum(matrix[0]) / len(matrix[0]), "backward_transfer": None,
                   "forward_transfer": None, "forgetting": None}
    else:
        metrics = summarize(matrix, random_init)
    return {
        "summary_schema": 1,
        "status": "ok",
        "kind": "continual",
        "sequence": ctx.sequence.name,
        "stages": [s.name for s in stages],
        "task": config.task.name,
        "dataset": config.dataset.partition(":")[0],
        "baseline": config.baseline.name,
        "family": config.baseline.family,
        "strategy": strategy_name,
        "settings": settings.as_dict(strategy_name),
        "seed": seed,
        "config_hash": digest,
        "metric": primary,
        "matrix": matrix,
        "matrix_rows": [name for name, _ in plan],
        "random_init": random_init,
        "metrics": metrics,
        "train_seconds": train_seconds,
        "records": stage_files,
    }


def _write_stage_record(ctx: SequenceContext, config: Any, strategy: str, seed: int, settings: StrategySettings,
                        row: int, stage_name: str, own: Optional[int], scores: list[Any], result: Any,
                        model: torch.nn.Module, modalities: tuple[str, ...], wall: float) -> Path:
    from vlbench.models.pretrained import WORD_LEVEL, describe_pretrained, tokenizer_signature
    from vlbench.results.records import (
        git_commit,
        now_iso,
        package_versions,
        predictions_path,
        record_header,
        record_path,
        set_aside_record,
    )
    from vlbench.training.device import describe_device

    stages = ctx.sequence.stages
    task = ctx.union if own is None else ctx.stage_tasks[own]
    test = scores[own] if own is not None else None
    if test is None:  # the joint model's own test set is every stage's: score the union once
        test = task.evaluate(model, "test", config.training.eval_batch_size, modalities, ctx.accelerator.device)
    folder = stage_record_dir(ctx.results_dir, ctx.sequence.name, strategy, row, stage_name)
    path = record_path(folder, config.task.name, config.dataset.partition(":")[0], config.baseline.name, seed)
    digest = ctx.digest(config, strategy, settings, row)
    set_aside_record(path, digest, lambda message: None)  # another config's record is kept
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    record = {
        **record_header(config, seed, digest, "ok"),
        "data": {"name": ctx.dataset.name, "source": config.dataset, "fingerprint": ctx.dataset.fingerprint,
                 "info": task.dataset.info,
                 "sizes": {role: task.num_examples(role) for role in ("train", "validation", "test")}},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(ctx.accelerator.device),
        "created": now_iso(),
        "parameters": {"trainable": trainable, "total": total},
        "tokenizer": {"source": ctx.tokenizer_source or WORD_LEVEL, "vocab_size": len(ctx.tokenizer),
                      "signature": tokenizer_signature(ctx.tokenizer), "used": "text" in modalities},
        "pretrained": describe_pretrained(config.baseline.pretrained),
        "peft": None,
        "features": None,
        "timing": {"wall_seconds": wall, "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                   "train_examples_per_second": result.train_examples / result.train_seconds if result.train_seconds else None},
        "training": {"history": result.history, "best_epoch": result.best_epoch, "best_validation": result.best_validation,
                     "steps": result.steps, "stopped_early": result.stopped_early, "precision": result.precision},
        "validation": {"primary": result.best_validation},
        "test": {"metrics": test.metrics, "details": test.details},
        "per_example": {"test": test.per_example},
        "continual": {"sequence": ctx.sequence.name, "strategy": strategy, "settings": settings.as_dict(strategy),
                      "stage": stage_name, "stage_index": row, "stages": [s.name for s in stages],
                      "scores": {s.name: float(v.primary) for s, v in zip(stages, scores)}},
    }
    pred = predictions_path(path, task.predictions_suffix)
    task.write_predictions(test.predictions, pred)
    record["predictions_file"] = pred.name
    atomic_write_json(path, record)
    return path
