"""Corpus-level metrics (sacreBLEU BLEU and chrF) recomputed on resampled test items, for paired tests.

A corpus BLEU is not a mean of sentence scores, so resampling sentence scores would test something
else. Instead each sentence's sufficient statistics (sacreBLEU's own: lengths, n-gram matches and
totals) are read back from the run's predictions file and the references written beside it, and the
corpus metric is recomputed from their sums on every resample, as sacreBLEU's own significance tests
do. The per-item test combines seeds by averaging each sentence's statistics over seeds (BLEU and chrF
depend only on ratios of the summed statistics, so this is the corpus metric of all seeds' outputs
pooled). The seed-and-item test (:func:`corpus_seed_item_test`) keeps every seed's statistics apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from vlbench.io import TEXT_REFERENCES, references_path
from vlbench.results.seeditem import SeedItemTest, combine

__all__ = ["CORPUS_METRICS", "CorpusItems", "CorpusSeeds", "corpus_items", "paired_corpus_test",
           "corpus_seed_item_test"]

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


@dataclass
class CorpusSeeds:
    """Every seed's per-item sufficient statistics, shape (seeds, items, statistics), rows in ``ids`` order."""

    ids: list[str]
    stats: np.ndarray
    score: Callable[[np.ndarray], float]

    def pooled(self) -> CorpusItems:
        """Each item's statistics averaged over seeds: the pooled corpus metric of all seeds' outputs."""
        return CorpusItems(self.ids, self.stats.mean(axis=0), self.score)


def corpus_items(record: dict[str, Any], metric: str) -> tuple[Optional[CorpusItems], str]:
    """Sufficient statistics of every test sentence of a record, checked against its recorded corpus score."""
    if metric not in CORPUS_METRICS:
        return None, f"{metric} is not a corpus metric vlbench recomputes"
    name, path = record.get("predictions_file"), record.get("_path")
    if not name or not path:
        return None, "corpus-level metric: the record names no predictions file to recompute it from"
    predictions = Path(path).parent / str(name)
    references = references_path(predictions, TEXT_REFERENCES)
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


def _aligned(a_ids: list[str], b_ids: list[str]) -> Optional[list[int]]:
    """Row order that puts B's items in A's order; None when the two were scored on different items."""
    order = {i: k for k, i in enumerate(b_ids)}
    if len(order) != len(a_ids) or set(order) != set(a_ids):
        return None
    return [order[i] for i in a_ids]


def corpus_seed_item_test(a: CorpusSeeds, b: CorpusSeeds, rounds: int = 1000, seed: int = 0) -> Optional[SeedItemTest]:
    """Seed-and-item test of the mean over seeds of a corpus metric; None if items differ or a side has < 2 seeds.

    Each seed's corpus score gives the seed part; the item part comes from a paired bootstrap of the test
    items (one draw for both systems, every seed's corpus metric recomputed from its resampled statistics):
    its variance of delta is ``W / n``, and each system's mean per-seed bootstrap variance less the variance
    of its seed mean gives the seed-by-item interaction (``R / n`` of the per-item case, scaled by S / (S-1)).
    """
    order = _aligned(a.ids, b.ids)
    if order is None or a.stats.shape[0] < 2 or b.stats.shape[0] < 2:
        return None
    systems = (a.stats, b.stats[:, order])
    scores = [np.array([a.score(s.sum(0)) for s in systems[0]]), np.array([b.score(s.sum(0)) for s in systems[1]])]
    delta = float(scores[0].mean() - scores[1].mean())
    n = len(a.ids)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=rounds).astype(np.float64)
    boot = [np.array([[score(t) for t in counts @ s] for s in stats]).T
            for stats, score in zip(systems, (a.score, b.score))]  # (rounds, seeds) per system
    interaction = []
    for per_seed in boot:
        seeds = per_seed.shape[1]
        value = (float(per_seed.var(axis=0, ddof=1).mean()) - float(per_seed.mean(axis=1).var(ddof=1)))
        interaction.append([(max(0.0, value) * seeds / (seeds - 1), (seeds - 1) * (n - 1))])
    item_var = float((boot[0].mean(axis=1) - boot[1].mean(axis=1)).var(ddof=1))
    method = (f"seed-and-item t-test (seed variance from each seed's corpus score, item variance from a paired "
              f"bootstrap of {rounds} rounds recomputing every seed's corpus metric, Satterthwaite df)")
    return combine(delta, scores[0], scores[1], interaction[0], interaction[1], [(item_var, n - 1)], n,
                   method=method)
