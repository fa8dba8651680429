"""Statistics against hand-computed values, scipy, and a seeded simulation of power and false positives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vlbench.results.items import item_values
from vlbench.results.stats import bootstrap_ci, paired_test, randomization_p, summarize, t_interval


def test_summary_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, n-1 = 3
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) from a t table, s / sqrt(4)
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    one = summarize([7.0])
    assert one.n == 1 and one.std is None and one.ci_low is None
    assert summarize([1.0, float("nan"), 3.0]).n == 2


def test_t_interval_matches_scipy():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 10):
        x = rng.normal(70, 2, size=n)
        expected = stats.t.interval(0.95, df=n - 1, loc=x.mean(), scale=stats.sem(x))
        assert t_interval(x) == pytest.approx(expected)


def test_exact_randomization_by_hand():
    # d = (1, 2, 3): the 8 sign patterns give sums 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 in 2 of 8
    assert randomization_p([np.array([1.0, 2.0, 3.0])]) == pytest.approx(0.25)
    assert randomization_p([np.zeros(5)]) == 1.0


def test_randomization_matches_scipy_permutation_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.3, 12), rng.normal(0.45, 0.3, 12)
    expected = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                      n_resamples=np.inf, alternative="two-sided").pvalue
    assert randomization_p([a - b], rounds=5000) == pytest.approx(expected, abs=1e-9)  # 2^12 <= 5000: exact
    assert randomization_p([a - b], rounds=3000, seed=1) == pytest.approx(expected, abs=0.03)  # sampled


def test_bootstrap_interval_covers_the_difference():
    d = np.random.default_rng(1).normal(2.0, 1.0, 400)
    low, high = bootstrap_ci([d], rounds=1000)
    assert low < d.mean() < high and high - low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.2)


def _simulate(effect: float, sims: int, n_items: int, seed: int) -> float:
    """Share of simulated paired comparisons that reject at 0.05 (items of varying difficulty, 0/1 scores)."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(sims):
        p = rng.uniform(0.3, 0.9, n_items)
        a = (rng.random(n_items) < np.clip(p + effect, 0, 1)).astype(float)
        b = (rng.random(n_items) < p).astype(float)
        result = paired_test({"items": dict(enumerate(a))}, {"items": dict(enumerate(b))}, rounds=400,
                             bootstrap_rounds=50, seed=int(rng.integers(1 << 30)))
        rejected += result.p_value < 0.05
    return rejected / sims


def test_detects_a_small_real_difference_and_holds_its_level_under_the_null():
    power = _simulate(effect=0.06, sims=40, n_items=1500, seed=1)
    assert power >= 0.8  # a 6-point gain on 1,500 items (analytic power about 0.97)
    sims = 300
    false_positive = _simulate(effect=0.0, sims=sims, n_items=200, seed=2)
    # nominal 0.05; allow the binomial noise of 300 simulations (3 standard errors)
    assert false_positive <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)


def test_groups_sum_their_means():
    a = {"i2t": {"1": 100.0, "2": 0.0}, "t2i": {"1": 100.0, "2": 100.0, "3": 0.0, "4": 0.0}}
    b = {"i2t": {"1": 0.0, "2": 0.0}, "t2i": {"1": 0.0, "2": 100.0, "3": 0.0, "4": 0.0}}
    result = paired_test(a, b, rounds=1000, bootstrap_rounds=100)
    assert result.delta == pytest.approx(50.0 + 25.0) and result.n_items == 6
    assert paired_test(a, {"i2t": b["i2t"]}) is None  # different items: no test


def test_item_values_recompute_vqa_and_retrieval():
    vqa = {"primary_metric": "accuracy", "test": {"metrics": {"accuracy": 33.33}},
           "per_example": {"test": {"1": 1.0, "2": 0.0, "3": 0.0}}}
    groups, _ = item_values(vqa, "accuracy")
    assert groups == {"items": {"1": 100.0, "2": 0.0, "3": 0.0}}
    ranks = {"i2t/1": 1.0, "i2t/2": 7.0, "t2i/10": 2.0, "t2i/11": 11.0}
    # i2t: R@1 50, R@5 50, R@10 100; t2i: R@1 0, R@5 50, R@10 50 -> rsum 300
    retrieval = {"primary_metric": "rsum", "test": {"metrics": {"rsum": 300.0, "t2i_R@5": 50.0}},
                 "per_example": {"test": ranks}}
    groups, _ = item_values(retrieval, "rsum")
    assert groups["i2t"] == {"1": 300.0, "2": 100.0} and groups["t2i"] == {"10": 200.0, "11": 0.0}
    assert item_values(retrieval, "t2i_R@5")[0] == {"t2i": {"10": 100.0, "11": 0.0}}
    wrong = {**retrieval, "test": {"metrics": {"rsum": 250.0}}}
    assert item_values(wrong, "rsum")[0] is None
    bleu = {"primary_metric": "BLEU", "test": {"metrics": {"BLEU": 40.0}}, "per_example": {"test": {"a": 10.0}}}
    groups, why = item_values(bleu, "BLEU")
    assert groups is None and "corpus-level" in why
