"""Records grouped into systems (one baseline and config, its seeds) and the comparisons the claims need.

A *system* is the finished records of one (task, dataset, baseline, config hash), one per seed. Two
systems are compared only on the same data (the same dataset fingerprint) and the same test items; the
tests are the project's seed-and-item tests (:mod:`vlbench.results.seeditem`, corpus metrics through
:mod:`vlbench.results.corpus`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from vlbench.results.corpus import CorpusSeeds, corpus_seed_item_test
from vlbench.results.seedarrays import seed_arrays
from vlbench.results.seeditem import SeedItemTest, contrast_test, seed_item_test

__all__ = ["System", "systems", "train_subset", "is_plain", "best_match", "compare", "item_arrays",
           "contrast", "aligned_arrays", "full_twin", "CORPUS_ROUNDS"]

CORPUS_ROUNDS = 1000  # bootstrap rounds of a corpus metric's item variance, as the table uses


def train_subset(record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The record's training subset (``--train-fraction`` / ``--k-shot``), or None when it trained on all of it."""
    subset = ((record.get("config") or {}).get("task") or {}).get("train_subset")
    return subset if isinstance(subset, dict) and any(v is not None for v in subset.values()) else None


def is_plain(record: dict[str, Any]) -> bool:
    """A run on the task's whole training split: no training subset, no continual-learning stage."""
    return train_subset(record) is None and not record.get("continual")


@dataclass
class System:
    """The finished records of one (task, dataset, baseline, config hash), sorted by seed."""

    records: list[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    def field(self, *path: str) -> Any:
        """``record[path[0]][path[1]]...`` of the first record (None where missing)."""
        value: Any = self.first
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    @property
    def task(self) -> str:
        return str(self.first["task"])

    @property
    def dataset(self) -> str:
        return str(self.first["dataset"])

    @property
    def baseline(self) -> str:
        return str(self.first["baseline"])

    @property
    def config_hash(self) -> str:
        return str(self.first["config_hash"])

    @property
    def seeds(self) -> list[int]:
        return [int(r["seed"]) for r in self.records]

    @property
    def fingerprint(self) -> Any:
        return self.field("data", "fingerprint")

    @property
    def modalities(self) -> Optional[frozenset[str]]:
        value = self.first.get("modalities")
        return frozenset(value) if isinstance(value, list) else None

    @property
    def trainable(self) -> Optional[int]:
        value = self.field("parameters", "trainable")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def metric(self) -> Optional[str]:
        return self.first.get("primary_metric") or self.field("config", "task", "primary_metric")

    def values(self, metric: str) -> list[float]:
        """A test metric of every seed that recorded it."""
        values = [(r.get("test") or {}).get("metrics", {}).get(metric) for r in self.records]
        return [float(v) for v in values if isinstance(v, (int, float))]

    def mean(self, metric: str) -> Optional[float]:
        """Mean over seeds of a test metric."""
        values = self.values(metric)
        return sum(values) / len(values) if values else None

    def std(self, metric: str) -> Optional[float]:
        """Sample standard deviation over seeds of a test metric (None below 2 seeds)."""
        values = self.values(metric)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def same_data(self, other: "System") -> bool:
        """Scored on the same task, dataset and data (fingerprint), so on the same test items."""
        return (self.task, self.dataset, self.fingerprint) == (other.task, other.dataset, other.fingerprint)

    def label(self) -> str:
        return f"{self.task}/{self.dataset} {self.baseline}"


def systems(records: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = is_plain) -> list[System]:
    """Finished records that ``keep`` accepts, grouped per (task, dataset, baseline, config hash), in a fixed order."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, str, str, str, int]] = set()
    for r in records:
        key = (r["task"], r["dataset"], r["baseline"], r["config_hash"])
        if r.get("status", "ok") == "ok" and keep(r) and key + (r["seed"],) not in seen:  # a seed read twice counts once
            seen.add(key + (r["seed"],))
            groups[key].append(r)
    return [System(sorted(groups[k], key=lambda r: r["seed"])) for k in sorted(groups)]


def best_match(mine: System, candidates: Sequence[System]) -> Optional[System]:
    """The candidate on the same data trained most like ``mine`` (most equal training fields, then most seeds)."""
    same = [c for c in candidates if c.same_data(mine)]
    if not same:
        return None
    training = mine.field("config", "training") or {}

    def likeness(c: System) -> tuple[int, int, str]:
        theirs = c.field("config", "training") or {}
        return sum(theirs.get(k) == v for k, v in training.items() if k != "seeds"), len(c.records), c.config_hash

    return max(same, key=likeness)


def full_twin(peft: System, pool: Sequence[System]) -> Optional[System]:
    """The full fine-tuning twin of a PEFT system: the same model and settings, no PEFT, trainable, on the same data."""
    same = [s for s in pool if not s.field("config", "baseline", "peft") and (s.trainable or 0) > 0
            and s.field("config", "baseline", "model") == peft.field("config", "baseline", "model")
            and s.field("config", "baseline", "config") == peft.field("config", "baseline", "config")]
    return best_match(peft, same)


def item_arrays(system: System, metric: str) -> tuple[Optional[dict[str, tuple[list[str], np.ndarray]]], str]:
    """A per-item metric's (seeds, items) arrays per group; None and why for a corpus metric or missing items."""
    arrays, why = seed_arrays(system.records, metric)
    if isinstance(arrays, CorpusSeeds):
        return None, f"{metric} is a corpus metric: no per-item contrast"
    return arrays, why


def compare(a: System, b: System, metric: str) -> tuple[Optional[SeedItemTest], str]:
    """Seed-and-item test of A against B on ``metric``; None and why when it cannot be run."""
    mine, why = seed_arrays(a.records, metric)
    theirs, why_ref = seed_arrays(b.records, metric)
    if mine is None or theirs is None:
        return None, why or why_ref
    if isinstance(mine, CorpusSeeds) and isinstance(theirs, CorpusSeeds):
        result = corpus_seed_item_test(mine, theirs, rounds=CORPUS_ROUNDS)
    elif isinstance(mine, dict) and isinstance(theirs, dict):
        if set(mine) != set(theirs) or any(mine[g][0] != theirs[g][0] for g in mine):
            return None, "the two were scored on different test items"
        groups = sorted(mine)
        result = seed_item_test([mine[g][1] for g in groups], [theirs[g][1] for g in groups])
    else:
        return None, "the two were scored differently"
    return (result, "") if result is not None else (None, "needs at least 2 seeds on each side and the same items")


def aligned_arrays(parts: Sequence[System], metric: str) -> tuple[Optional[list[list[np.ndarray]]], str]:
    """Each system's (seeds, items) arrays per group, groups and items in one order; None and why otherwise."""
    arrays = []
    for system in parts:
        values, why = item_arrays(system, metric)
        if values is None:
            return None, why
        arrays.append(values)
    groups = sorted(arrays[0])
    if any(set(a) != set(groups) or any(a[g][0] != arrays[0][g][0] for g in groups) for a in arrays[1:]):
        return None, "the systems were scored on different test items"
    return [[a[g][1] for g in groups] for a in arrays], ""


def contrast(parts: Sequence[System], weights: Sequence[float], metric: str) -> tuple[Optional[SeedItemTest], str]:
    """Seed-and-item test of ``sum_k w_k score_k = 0`` over systems scored on the same items."""
    arrays, why = aligned_arrays(parts, metric)
    if arrays is None:
        return None, why
    result = contrast_test(arrays, weights)
    return (result, "") if result is not None else (None, "needs at least 2 seeds of each system")
