"""Every seed's per-item values of a metric, the input of the seed-and-item tests.

One system (one baseline and config) is its finished records, one per seed; every seed must have been
scored on the same test items. A per-item metric gives ``group -> (item ids, a (seeds, items) array)``
(:mod:`vlbench.results.items`); a corpus metric (BLEU, chrF) every seed's sentence statistics
(:mod:`vlbench.results.corpus`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from vlbench.results.corpus import CORPUS_METRICS, CorpusSeeds, corpus_items
from vlbench.results.items import item_values

__all__ = ["ItemSeeds", "SeedArrays", "item_seeds", "corpus_seeds", "seed_arrays"]

ItemSeeds = dict[str, tuple[list[str], np.ndarray]]  # group -> (item ids, (seeds, items) values)
SeedArrays = Union[ItemSeeds, CorpusSeeds]


def item_seeds(records: Sequence[dict[str, Any]], metric: str) -> tuple[Optional[ItemSeeds], str]:
    """group -> (item ids, a (seeds, items) array of values); None and why when the seeds cannot be lined up."""
    per_seed, why = _per_seed(records, metric, item_values)
    if per_seed is None:
        return None, why
    shape = {g: set(v) for g, v in per_seed[0].items()}
    if any({g: set(v) for g, v in s.items()} != shape for s in per_seed[1:]):
        return None, "seeds were scored on different test items"
    out = {}
    for g, items in shape.items():
        ids = sorted(items)
        out[g] = (ids, np.array([[s[g][i] for i in ids] for s in per_seed], dtype=np.float64))
    return out, ""


def corpus_seeds(records: Sequence[dict[str, Any]], metric: str) -> tuple[Optional[CorpusSeeds], str]:
    """Every seed's sentence statistics of a corpus metric (BLEU, chrF)."""
    per_seed, why = _per_seed(records, metric, corpus_items)
    if per_seed is None:
        return None, why
    if any(s.ids != per_seed[0].ids for s in per_seed[1:]):
        return None, "seeds were scored on different test items"
    return CorpusSeeds(per_seed[0].ids, np.stack([s.stats for s in per_seed]), per_seed[0].score), ""


def seed_arrays(records: Sequence[dict[str, Any]], metric: str) -> tuple[Optional[SeedArrays], str]:
    """The seeds' per-item values of ``metric``: corpus statistics for BLEU/chrF, item values otherwise."""
    return (corpus_seeds if metric in CORPUS_METRICS else item_seeds)(records, metric)


def _per_seed(records: Sequence[dict[str, Any]], metric: str,
              read: Callable[[dict[str, Any], str], tuple[Any, str]]) -> tuple[Optional[list[Any]], str]:
    """``read(record, metric)`` for every seed's record; None and the first reason when one cannot be read."""
    per_seed = []
    for record in records:
        values, why = read(record, metric)
        if values is None:
            return None, why
        per_seed.append(values)
    if not per_seed:
        return None, "no finished runs"
    return per_seed, ""
