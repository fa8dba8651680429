"""Per-item values of a metric, from a record's per-example test scores, for paired tests.

A metric is testable when it is recomputed exactly from per-item values as a sum of group means:
* a mean of per-example scores (VQA accuracy, CIDEr per image with the test set's document
  frequencies): one group, each item's score in the metric's unit;
* retrieval recalls and rsum from 1-based ranks (``i2t/<id>``, ``t2i/<id>``): R@K is 100 x the share of
  ranks <= K in its direction; rsum sums six recalls.
Anything else is not testable from per-example scores and says why (corpus BLEU and chrF are tested
by recomputing them from sentence statistics instead: :mod:`vlbench.results.corpus`). Each recomputation is checked against the record's own metric value before use.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

__all__ = ["item_values"]

Groups = dict[str, dict[str, float]]
_RECALL = re.compile(r"^(i2t|t2i)_R@(\d+)$")
_RSUM_KS = (1, 5, 10)


def _close(recomputed: float, recorded: float) -> bool:
    # official VQA accuracy is rounded to 2 decimals; anything else must match to float precision
    return abs(recomputed - recorded) <= 0.0051 + 1e-9 * abs(recorded)


def _statistic(groups: Groups) -> float:
    return sum(sum(v.values()) / len(v) for v in groups.values() if v)


def _retrieval(per: dict[str, float], metric: str) -> Optional[Groups]:
    ranks: dict[str, dict[str, float]] = {"i2t": {}, "t2i": {}}
    for key, rank in per.items():
        direction, _, item = key.partition("/")
        if direction not in ranks or not item:
            return None
        ranks[direction][item] = rank
    match = _RECALL.match(metric)
    if match:
        direction, k = match.group(1), int(match.group(2))
        return {direction: {i: 100.0 * (r <= k) for i, r in ranks[direction].items()}}
    if metric == "rsum":
        return {d: {i: 100.0 * sum(r <= k for k in _RSUM_KS) for i, r in items.items()} for d, items in ranks.items()}
    return None


def item_values(record: dict[str, Any], metric: str) -> tuple[Optional[Groups], str]:
    """(group -> item -> value, "") when ``metric`` is a sum of group means of per-item values, else (None, why)."""
    per = (record.get("per_example") or {}).get("test") or {}
    recorded = (record.get("test") or {}).get("metrics", {}).get(metric)
    if not per:
        return None, "no per-example test scores in the record"
    if not isinstance(recorded, (int, float)) or not math.isfinite(recorded):
        return None, f"no finite {metric} in the record"
    if all("/" in k and k.split("/", 1)[0] in ("i2t", "t2i") for k in per):
        groups = _retrieval(per, metric)
        if groups is None:
            return None, f"{metric} is not recomputable from retrieval ranks"
    elif metric == record.get("primary_metric"):
        mean = sum(per.values()) / len(per)
        scale = next((s for s in (1.0, 100.0) if _close(s * mean, recorded)), None)
        if scale is None:
            return None, f"corpus-level metric: {metric} is not the mean of per-example scores, not tested"
        groups = {"items": {k: scale * v for k, v in per.items()}}
    else:
        return None, f"no per-example scores for {metric}"
    if not _close(_statistic(groups), recorded):
        return None, f"{metric} recomputed from per-example scores does not match the record"
    return groups, ""
