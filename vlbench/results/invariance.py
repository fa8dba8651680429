"""Evaluation invariance: a trained model's test scores must not depend on how its evaluation was batched.

Users of other harnesses report accuracy changing with the evaluation batch size (padding that leaks into
pooling or attention, batch-dependent normalisation, batched decoding that stops early). vlbench checks
it: the test split is scored again one example per batch, and the metrics and every item's score are
compared with the run's own test pass. Scores are produced from the predictions by the task's official
scorer, so equal item scores mean equal predictions as far as the metric can see; a difference of up to
``TOLERANCE`` is allowed for floating-point sums that a metric adds up in another order.
"""

from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["TOLERANCE", "invariance_block"]

TOLERANCE = 1e-9


def _difference(a: Any, b: Any) -> float:
    """|a - b| of two scores (0 for two equal non-numbers, inf when only one is a finite number)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(float(a) - float(b)) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
    return 0.0 if a == b else math.inf


def invariance_block(reference: Any, batch_size: int, evaluate: Callable[[int], Any], other: int = 1) -> dict[str, Any]:
    """The record's ``eval_invariance`` block: ``reference`` (the test pass at ``batch_size``) against ``evaluate(other)``.

    ``reference`` and ``evaluate``'s result are EvalResults (``metrics``, ``per_example``).
    """
    again = evaluate(other)
    names = sorted(set(reference.metrics) | set(again.metrics))
    metric_gaps = {n: _difference(reference.metrics.get(n), again.metrics.get(n)) for n in names}
    items = sorted(set(reference.per_example) | set(again.per_example))
    differing = [i for i in items
                 if _difference(reference.per_example.get(i), again.per_example.get(i)) > TOLERANCE]
    largest = max(metric_gaps.values(), default=0.0)
    return {
        "batch_sizes": [batch_size, other],
        "tolerance": TOLERANCE,
        "invariant": largest <= TOLERANCE and not differing,
        "max_metric_difference": largest if math.isfinite(largest) else None,
        "metrics_differing": [n for n, gap in metric_gaps.items() if gap > TOLERANCE],
        "items": len(items),
        "items_differing": len(differing),
        "examples": differing[:10],
    }
