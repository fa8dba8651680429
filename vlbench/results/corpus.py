"""Corpus-level metrics (sacreBLEU BLEU and chrF) recomputed on resampled test items, for paired tests.

A corpus BLEU is not a mean of sentence scores, so resampling sentence scores would test something
else. Instead each sentence's sufficient statistics (sacreBLEU's own: lengths, n-gram matches and
totals) are read back from the run's predictions file and the references written beside it, and the
corpus metric is recomputed from their sums on every resample, as sacreBLEU's own significance tests
do. Seeds are combined by averaging each sentence's statistics over seeds (BLEU and chrF depend only on
ratios of the summed statistics, so this is the corpus metric of all seeds' outputs pooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["CORPUS_METRICS", "CorpusItems", "corpus_items", "paired_corpus_test"]

CORPUS_METRICS = ("BLEU", "chrF")


def _metric(name: str) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    return {"BLEU": BLEU, "chrF": CHRF}[name]()  # the default settings translation_evaluate scores with


@dataclass
class CorpusItems:
    """Per-item sufficient statistics (rows in ``ids`` order) and the function from their sum to the metric."""

    ids: list[str]
    stats: np.ndarray
    score: Callable[[np.ndarray], float]


def corpus_items(record: dict[str, Any], metric: str) -> tuple[Optional[CorpusItems], str]:
    """Sufficient statistics of every test sentence of a record, checked against its recorded corpus score."""
    if metric not in CORPUS_METRICS:
        return None, f"{metric} is not a corpus metric vlbench recomputes"
    name, path = record.get("predictions_file"), record.get("_path")
    if not name or not path:
        return None, "corpus-level metric: the record names no predictions file to recompute it from"
    predictions = Path(path).parent / str(name)
    references = predictions.with_name(predictions.stem + ".ref.txt")
    try:
        hyps = predictions.read_text(encoding="utf-8").splitlines()
        refs = references.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None, f"corpus-level metric: its predictions or references ({references.name}) are not readable"
    ids = list(((record.get("per_example") or {}).get("test") or {}).keys())
    if not (len(hyps) == len(refs) == len(ids)) or not ids:
        return None, "corpus-level metric: predictions, references and per-example ids do not line up"
    scorer = _metric(metric)
    stats = np.asarray(scorer._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)

    def score(total: np.ndarray) -> float:
        return float(scorer._compute_score_from_stats([float(x) for x in total]).score)

    recorded = record["test"]["metrics"].get(metric)
    if not isinstance(recorded, (int, float)) or abs(score(stats.sum(0)) - recorded) > 1e-6 * max(1.0, abs(recorded)):
        return None, f"{metric} recomputed from the predictions file does not match the record"
    return CorpusItems(ids, stats, score), ""


def paired_corpus_test(a: CorpusItems, b: CorpusItems, rounds: int = 1000, bootstrap_rounds: int = 1000,
                       seed: int = 0) -> Optional[tuple[float, float, float, float, int]]:
    """(delta, two-sided approximate-randomization p, bootstrap CI low, high, n items); None if items differ."""
    if a.ids != b.ids:
        order = {i: k for k, i in enumerate(b.ids)}
        if set(order) != set(a.ids):
            return None
        b = CorpusItems(a.ids, b.stats[[order[i] for i in a.ids]], b.score)
    A, B = a.stats, b.stats
    delta = a.score(A.sum(0)) - b.score(B.sum(0))
    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(rounds, len(a.ids))).astype(np.float64) @ (B - A)  # items whose outputs trade
    sum_a, sum_b = A.sum(0) + swap, B.sum(0) - swap
    permuted = np.array([a.score(x) - b.score(y) for x, y in zip(sum_a, sum_b)])
    p = (1 + int(np.sum(np.abs(permuted) >= abs(delta) - 1e-9))) / (1 + rounds)
    counts = rng.multinomial(len(a.ids), np.full(len(a.ids), 1 / len(a.ids)), size=bootstrap_rounds).astype(np.float64)
    boot = np.array([a.score(x) - b.score(y) for x, y in zip(counts @ A, counts @ B)])
    return delta, p, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)), len(a.ids)
