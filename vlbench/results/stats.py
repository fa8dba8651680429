"""Statistics over run records: mean, sample std and t-interval over seeds; paired tests over test items.

These item-level tests ignore the variance between training seeds; the table's main p-value is the
seed-and-item test of :mod:`vlbench.results.seeditem`, and this one is its ``p_value_items`` column.

Paired tests compare two systems on the *same* test items. Each system's per-item values are first
averaged over its seeds (so a system is one number per item), then the difference ``d_i = a_i - b_i``
is tested:

* **approximate randomization** (sign flipping): under the null hypothesis the two systems are
  exchangeable on each item, so each ``d_i`` is equally likely to have either sign. The p-value is the
  share of random sign patterns whose statistic is at least as far from 0 as the observed one
  (two-sided, ``(1 + hits) / (1 + rounds)``; exact enumeration when 2^n <= rounds).
* **paired bootstrap**: items are resampled with replacement (the same draw for both systems) to give
  a percentile confidence interval of the difference.

Items may fall in groups (e.g. retrieval's image->text and text->image queries); the statistic is then
the sum over groups of the group means of ``d``, which is how ``rsum`` or a recall is computed, and
resampling stays within each group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = ["Summary", "summarize", "t_interval", "PairedTest", "paired_test", "randomization_p", "bootstrap_ci"]


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n-1) and a t confidence interval of values over seeds."""

    n: int
    mean: Optional[float]
    std: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[Optional[float], Optional[float]]:
    """Two-sided Student-t confidence interval of the mean; (None, None) with fewer than 2 values."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None, None
    half = stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def summarize(values: Sequence[float], level: float = 0.95) -> Summary:
    """Summary of the finite values (non-finite ones are left out and not counted)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return Summary(0, None, None, None, None)
    std = float(x.std(ddof=1)) if x.size > 1 else None
    low, high = t_interval(x, level)
    return Summary(int(x.size), float(x.mean()), std, low, high)


def _weighted(groups: Sequence[np.ndarray]) -> np.ndarray:
    """One vector whose sum is the statistic: each group's items weighted by 1 / its size."""
    return np.concatenate([g / g.size for g in groups if g.size])


def randomization_p(groups: Sequence[np.ndarray], rounds: int = 10000, seed: int = 0) -> float:
    """Two-sided approximate-randomization p-value of sum-of-group-means of paired differences being 0."""
    v = _weighted(groups)
    observed = abs(float(v.sum()))
    tol = 1e-12 * max(1.0, float(np.abs(v).sum()))
    if v.size == 0 or observed <= tol and not np.any(v):
        return 1.0
    if 2 ** v.size <= rounds:  # few items: every sign pattern, an exact p-value
        signs = ((np.arange(2 ** v.size)[:, None] >> np.arange(v.size)) & 1) * 2 - 1
        stats_ = np.abs(signs @ v)
        return float(np.mean(stats_ >= observed - tol))
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, min(rounds, 2_000_000 // max(v.size, 1)))
    while done < rounds:
        size = min(chunk, rounds - done)
        signs = rng.integers(0, 2, size=(size, v.size), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs @ v) >= observed - tol))
        done += size
    return (1 + hits) / (1 + rounds)


def bootstrap_ci(groups: Sequence[np.ndarray], rounds: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile paired-bootstrap interval of the sum of group means of the differences."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(rounds)
    for g in groups:
        if not g.size:
            continue
        chunk = max(1, min(rounds, 4_000_000 // g.size))
        for start in range(0, rounds, chunk):
            stop = min(rounds, start + chunk)
            idx = rng.integers(0, g.size, size=(stop - start, g.size))
            totals[start:stop] += g[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(totals, alpha)), float(np.quantile(totals, 1 - alpha))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of system A over system B on the same items."""

    delta: float  # statistic(A) - statistic(B) on the seed-averaged items
    p_value: float  # approximate randomization, two-sided
    ci_low: float  # paired bootstrap percentile interval of delta
    ci_high: float
    n_items: int
    method: str


def paired_test(a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]], *, rounds: int = 10000,
                bootstrap_rounds: int = 2000, seed: int = 0) -> Optional[PairedTest]:
    """Test A against B given ``group -> item id -> value`` for each; None when their items differ."""
    if set(a) != set(b) or any(set(a[g]) != set(b[g]) for g in a):
        return None
    groups = []
    for g in sorted(a):
        items = sorted(a[g])
        groups.append(np.array([a[g][i] - b[g][i] for i in items], dtype=np.float64))
    if not any(x.size for x in groups):
        return None
    delta = float(_weighted(groups).sum())
    p = randomization_p(groups, rounds=rounds, seed=seed)
    low, high = bootstrap_ci(groups, rounds=bootstrap_rounds, seed=seed) if bootstrap_rounds > 0 else (math.nan, math.nan)
    method = f"paired approximate randomization ({rounds} rounds) + paired bootstrap CI ({bootstrap_rounds})"
    return PairedTest(delta, p, low, high, sum(x.size for x in groups), method)
