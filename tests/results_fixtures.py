"""Run records made by hand for the results tests: valid schema-3 records with chosen scores."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

BASE_CONFIG = {
    "task": {"name": "vqa", "type": "vqa", "description": "d", "dataset": "shapes", "data": {}, "metrics": ["accuracy"],
             "primary_metric": "accuracy", "options": {}, "reference_baseline": "text-bert",
             "training": {"lr": 0.001, "seeds": [0]}},
    "baseline": {"name": "vilt", "description": "", "model": "vilt", "tasks": ["vqa"], "family": "single-stream",
                 "config": {"hidden_size": 32}, "training": {}, "peft": None, "pretrained": None},
    "training": {"epochs": 2, "lr": 0.001, "batch_size": 8, "seeds": [0], "precision": "auto"},
    "dataset": "shapes",
}


def make_record(baseline: str = "vilt", seed: int = 0, scores: Optional[dict[str, float]] = None, *,
                config_hash: str = "aaaaaaaaaaaaaaaa", lr: float = 0.001, task: str = "vqa",
                status: str = "ok", versions: Optional[dict[str, str]] = None, trainable: int = 1000,
                ablation: Optional[tuple[float, float]] = None, reference: str = "text-bert",
                history: Optional[list[float]] = None, gpu_bytes: Optional[int] = None,
                emap: Optional[tuple[float, float]] = None, modalities: Optional[list[str]] = None,
                question_only: Optional[tuple[float, float]] = None) -> dict[str, Any]:
    """A record whose accuracy is 100 x the mean of ``scores`` (item id -> 0..1); ``question_only``: (prior, ceiling)."""
    config = copy.deepcopy(BASE_CONFIG)
    config["baseline"]["name"] = baseline
    config["task"]["name"] = task
    config["task"]["reference_baseline"] = reference
    config["training"]["lr"] = lr
    record: dict[str, Any] = {
        "schema": 3, "status": status, "task": task, "dataset": "shapes", "baseline": baseline, "seed": seed,
        "config_hash": config_hash, "config": config, "primary_metric": "accuracy",
        "versions": versions or {"vlbench": "0.2.0", "torch": "2.14.1", "python": "3.11"},
        "git_commit": "0123456789abcdef", "device": "cpu", "created": f"2026-11-30T10:00:0{seed % 10}+00:00",
    }
    if status == "failed":
        record["failure"] = {"type": "TrainingError", "reason": "loss became nan at step 3", "step": 3,
                             "last_finite_loss": 2.5, "hint": "lower the learning rate"}
        return record
    scores = scores if scores is not None else {"1": 1.0, "2": 0.0}
    accuracy = 100 * sum(scores.values()) / len(scores)
    record.update({
        "data": {"fingerprint": "fp1", "sizes": {"test": len(scores)},
                 "question_only": ({"metric": "accuracy", "prior": question_only[0], "question_oracle": question_only[1]}
                                   if question_only else None)},
        "parameters": {"trainable": trainable, "total": 2 * trainable},
        "tokenizer": {"source": "word-level", "used": True},
        "modalities": modalities if modalities is not None else ["text", "image"],
        "timing": {"wall_seconds": 10.0, "train_seconds": 6.0, "eval_seconds": 3.0, "train_examples_per_second": 5.0},
        "memory": {"peak_bytes": gpu_bytes, "kind": "cuda_max_allocated" if gpu_bytes else "not_measured"},
        "training": {"history": [{"epoch": i + 1, "validation": v} for i, v in enumerate(history or [50.0, 60.0])],
                     "best_epoch": 2, "precision": "fp32"},
        "test": {"metrics": {"accuracy": accuracy}},
        "per_example": {"test": dict(scores)},
        "ablation": ({"metric": "accuracy", "real": accuracy, "blank": ablation[0], "shuffled": ablation[1]}
                     if ablation else None),
        "emap": ({"metric": "accuracy", "items": len(scores), "pairs": len(scores) ** 2, "seed": seed, "split": "test",
                  "model": emap[0], "emap": emap[1], "gap": emap[0] - emap[1]} if emap else None),
    })
    return record


def write_record(folder: Path, record: dict[str, Any], name: Optional[str] = None) -> Path:
    """Write a record where ``vlbench run`` would (or under ``name``)."""
    path = folder / record["task"] / record["dataset"] / (name or record["baseline"]) / f"seed-{record['seed']}.json"
    if name is None and record["config_hash"] != "aaaaaaaaaaaaaaaa":
        path = path.with_name(f"seed-{record['seed']}-{record['config_hash'][:4]}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path
