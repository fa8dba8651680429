"""A test of A against B that carries both sources of variance: training seeds and test items.

Each system k has a (seeds x items) array of per-item scores ``x[k, s, i]`` on the same test items, and
the statistic is the mean over seeds and items (a sum of group means when items fall in groups). Under the
crossed random-effects model ``x = mu_k + seed_{k,s} + item_{k,i} + interaction_{k,s,i}`` (items paired
across the two systems, seeds independent) the variance of ``delta = mean(A) - mean(B)`` is

    var(seed_A) / S_A + var(seed_B) / S_B + var(item_A - item_B) / n + var(inter_A) / (S_A n) + ...(B)

and every part is estimated by the usual two-way ANOVA mean squares (Searle, Casella & McCulloch 1992):

* the variance of the per-seed scores, ``V_k``, estimates ``var(seed_k) + var(inter_k) / n``;
* the variance over items of the seed-averaged differences, ``W``, estimates
  ``var(item_A - item_B) + var(inter_A) / S_A + var(inter_B) / S_B``;
* the residual mean square of each system's array, ``R_k``, estimates ``var(inter_k)``.

So ``var(delta) = sum_k max(0, V_k - R_k / n) / S_k + W / n`` (the seed component of a system clamped at
0 when its seeds agree better than item noise alone allows), and ``t = delta / sqrt(var)`` is referred to
a t distribution with Satterthwaite's (1946) degrees of freedom for that combination of mean squares.
With few seeds the seed terms have few degrees of freedom and the test is a Welch test over seeds; with
exactly equal seeds it is a paired t-test over items. Why not a bootstrap or a permutation over 3 seeds:
see docs/results.md ("Statistics").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["SeedItemTest", "seed_item_test", "combine", "residual_ms", "contrast_test", "METHOD"]

METHOD = "seed-and-item t-test (two-way ANOVA variance components over seeds and paired items, Satterthwaite df)"


@dataclass(frozen=True)
class SeedItemTest:
    """A against B with seed and item variance: delta, two-sided p, t interval and the variance parts."""

    delta: float
    p_value: float
    ci_low: float
    ci_high: float
    df: float
    seed_var: tuple[float, float]  # estimated between-seed variance of A's and B's score (clamped at 0)
    item_var: float  # variance of delta due to the test items (W / n)
    n_seeds: tuple[int, int]
    n_items: int
    method: str = METHOD


def residual_ms(x: np.ndarray) -> float:
    """Two-way ANOVA residual mean square of a (seeds, items) array: the seed-by-item interaction variance."""
    seeds, items = x.shape
    if seeds < 2 or items < 2:
        return 0.0
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float(np.sum(r * r) / ((seeds - 1) * (items - 1)))


def _seed_terms(per_seed: np.ndarray,
                interaction: Sequence[tuple[float, float]]) -> tuple[list[tuple[float, float]], float]:
    """(value, df) terms of ``max(0, V - interaction) / S`` and the clamped seed variance; no terms when clamped."""
    seeds = per_seed.size
    v = float(per_seed.var(ddof=1))
    seed_var = v - sum(value for value, _ in interaction)
    if seed_var <= 0:
        return [], 0.0
    return [(v / seeds, seeds - 1)] + [(-value / seeds, df) for value, df in interaction if df > 0], seed_var


def combine(delta: float, seeds_a: np.ndarray, seeds_b: np.ndarray, inter_a: Sequence[tuple[float, float]],
            inter_b: Sequence[tuple[float, float]], items: Sequence[tuple[float, float]], n_items: int,
            level: float = 0.95, method: str = METHOD) -> Optional[SeedItemTest]:
    """The test from its parts: per-seed scores, interaction variances / n and item variances / n, each with its df.

    ``inter_*`` are the (value, df) terms whose sum estimates ``var(interaction) / n`` of that system's
    per-seed score; ``items`` the terms whose sum is the item part of ``var(delta)``. None with < 2 seeds.
    """
    from scipy import stats

    if seeds_a.size < 2 or seeds_b.size < 2:
        return None
    terms_a, var_a = _seed_terms(seeds_a, inter_a)
    terms_b, var_b = _seed_terms(seeds_b, inter_b)
    terms = terms_a + terms_b + [t for t in items if t[1] > 0]
    total = sum(value for value, _ in terms)
    item_var = sum(value for value, df in items if df > 0)
    sizes = (int(seeds_a.size), int(seeds_b.size))
    if total <= 1e-15 * max(1.0, delta * delta):  # no variance at all: every seed and item says the same
        p = 1.0 if delta == 0 else 0.0
        return SeedItemTest(delta, p, delta, delta, math.inf, (var_a, var_b), item_var, sizes, n_items, method)
    df = total ** 2 / sum(value ** 2 / df for value, df in terms)
    se = math.sqrt(total)
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return SeedItemTest(delta, min(1.0, p), delta - half, delta + half, float(df), (var_a, var_b), item_var, sizes,
                        n_items, method)


def seed_item_test(a: Sequence[np.ndarray], b: Sequence[np.ndarray], level: float = 0.95) -> Optional[SeedItemTest]:
    """Test A against B from per-group (seeds, items) arrays, the same items in the same order on both sides.

    The statistic is the sum over groups of the mean over seeds and items (retrieval's rsum, a recall, or
    one group's mean accuracy). None when a side has fewer than 2 seeds or the groups do not line up.
    """
    if len(a) != len(b) or any(x.shape[1] != y.shape[1] for x, y in zip(a, b)):
        return None
    a = [x for x in a if x.shape[1]]
    b = [y for y in b if y.shape[1]]
    if not a:
        return None
    seeds_a = sum(x.mean(axis=1) for x in a)
    seeds_b = sum(y.mean(axis=1) for y in b)
    delta = float(seeds_a.mean() - seeds_b.mean())
    inter_a = [(residual_ms(x) / x.shape[1], (x.shape[0] - 1) * (x.shape[1] - 1)) for x in a]
    inter_b = [(residual_ms(y) / y.shape[1], (y.shape[0] - 1) * (y.shape[1] - 1)) for y in b]
    items = []
    for x, y in zip(a, b):
        d = x.mean(axis=0) - y.mean(axis=0)
        items.append((float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0, d.size - 1))
    return combine(delta, np.asarray(seeds_a, dtype=np.float64), np.asarray(seeds_b, dtype=np.float64),
                   inter_a, inter_b, items, sum(x.shape[1] for x in a), level)


def contrast_test(systems: Sequence[Sequence[np.ndarray]], weights: Sequence[float],
                  level: float = 0.95) -> Optional[SeedItemTest]:
    """Test of ``sum_k w_k score_k = 0`` for K systems scored on the same items (each a list of (seeds, items) groups).

    The same variance components as :func:`seed_item_test`, each system's weighted by ``w_k ** 2``, the item
    part from the weighted per-item contrast; with two systems and weights (1, -1) it is that test.
    ``n_seeds`` holds the first two systems' seed counts. None when a system has < 2 seeds or groups differ.
    """
    from scipy import stats

    if len(systems) != len(weights) or len(systems) < 2 or len({len(s) for s in systems}) != 1:
        return None
    if any(x.shape[1] != y.shape[1] for s in systems[1:] for x, y in zip(systems[0], s)):
        return None
    if any(x.shape[0] < 2 for s in systems for x in s):
        return None
    keep = [g for g, x in enumerate(systems[0]) if x.shape[1]]
    if not keep:
        return None
    terms: list[tuple[float, float]] = []
    seed_vars, delta = [], 0.0
    for w, groups in zip(weights, systems):
        arrays = [groups[g] for g in keep]
        per_seed = np.asarray(sum(x.mean(axis=1) for x in arrays), dtype=np.float64)
        delta += w * float(per_seed.mean())
        inter = [(residual_ms(x) / x.shape[1], (x.shape[0] - 1) * (x.shape[1] - 1)) for x in arrays]
        part, var = _seed_terms(per_seed, inter)
        terms += [(w * w * value, df) for value, df in part]
        seed_vars.append(w * w * var)
    items = []
    for g in keep:
        d = sum(w * s[g].mean(axis=0) for w, s in zip(weights, systems))
        items.append((float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0, d.size - 1))
    terms += [t for t in items if t[1] > 0]
    total = sum(value for value, _ in terms)
    item_var = sum(value for value, df in items if df > 0)
    sizes = (int(systems[0][keep[0]].shape[0]), int(systems[1][keep[0]].shape[0]))
    n_items = sum(systems[0][g].shape[1] for g in keep)
    method = f"seed-and-item t-test of a contrast of {len(systems)} systems (weights {', '.join(f'{w:g}' for w in weights)})"
    if total <= 1e-15 * max(1.0, delta * delta):
        p = 1.0 if abs(delta) <= 1e-12 else 0.0
        return SeedItemTest(delta, p, delta, delta, math.inf, (seed_vars[0], seed_vars[1]), item_var, sizes,
                            n_items, method)
    df = total ** 2 / sum(value ** 2 / df for value, df in terms)
    se = math.sqrt(total)
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return SeedItemTest(delta, min(1.0, p), delta - half, delta + half, float(df), (seed_vars[0], seed_vars[1]),
                        item_var, sizes, n_items, method)
