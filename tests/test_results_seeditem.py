"""The seed-and-item test: false-positive rate and power by simulation, and scipy where a closed form exists."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tests.results_fixtures import make_record, write_record
from vlbench.results.aggregate import aggregate
from vlbench.results.corpus import CorpusSeeds, corpus_seed_item_test
from vlbench.results.records import read_records
from vlbench.results.seeditem import seed_item_test
from vlbench.results.stats import randomization_p
from vlbench.results.table import render

SEEDS, ITEMS, SIMS = 3, 200, 300
LIMIT = 0.05 + 3 * math.sqrt(0.05 * 0.95 / SIMS)  # nominal level plus 3 binomial standard errors of SIMS runs


def _system(rng, difficulty, effect, kind):
    """(seeds, items) scores in points: seed-dominated (a shift per seed, little item noise) or 0/100 items."""
    if kind == "seed":
        shift = rng.normal(0, 0.08, (SEEDS, 1))  # seeds disagree by about 8 points
        return 100 * np.clip(difficulty + effect + shift + rng.normal(0, 0.02, (SEEDS, difficulty.size)), 0, 1)
    return 100.0 * (rng.random((SEEDS, difficulty.size)) < np.clip(difficulty + effect, 0, 1))


def _rejections(kind, effect, seed, items=ITEMS):
    """Share of SIMS simulated comparisons rejected at 0.05: (seed-and-item test, items-only randomization)."""
    rng = np.random.default_rng(seed)
    new = old = 0
    for _ in range(SIMS):
        difficulty = rng.uniform(0.2, 0.8, items)
        a, b = _system(rng, difficulty, effect, kind), _system(rng, difficulty, 0.0, kind)
        new += seed_item_test([a], [b]).p_value < 0.05
        old += randomization_p([a.mean(0) - b.mean(0)], rounds=200, seed=int(rng.integers(1 << 30))) < 0.05
    return new / SIMS, old / SIMS


def test_seed_dominated_noise_holds_the_level_where_the_items_only_test_does_not():
    new, old = _rejections("seed", 0.0, seed=0)
    assert new <= LIMIT  # equal true means: the seeds' disagreement is not taken for a difference
    assert old >= 0.5  # the items-only test calls most of these chance differences significant


def test_item_dominated_noise_holds_the_level_and_keeps_power():
    new, old = _rejections("item", 0.0, seed=1)
    assert new <= LIMIT and old <= LIMIT
    power, _ = _rejections("item", 0.08, seed=2, items=400)
    assert power >= 0.8  # an 8-point gain on 400 items with 3 seeds each is found


def test_no_item_noise_is_welch_over_seed_means():
    rng = np.random.default_rng(4)
    item = rng.normal(0, 10, 50)  # the same item effect on both sides: it cancels in the paired difference
    seeds_a, seeds_b = rng.normal(60, 5, 3), rng.normal(50, 1, 4)
    result = seed_item_test([seeds_a[:, None] + item], [seeds_b[:, None] + item])
    welch = stats.ttest_ind(seeds_a, seeds_b, equal_var=False)
    assert result.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    low, high = welch.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_identical_seeds_is_a_paired_t_test_over_items():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.6, 0.3, 40), rng.normal(0.5, 0.3, 40)
    result = seed_item_test([np.tile(a, (3, 1))], [np.tile(b, (2, 1))])
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9) and result.df == 39


def test_variance_components_recover_planted_ones():
    rng = np.random.default_rng(6)
    seeds, items = 400, 300  # many seeds, so the seed variance itself is estimated well
    x = rng.normal(0, 3, (seeds, 1)) + rng.normal(0, 20, (1, items)) + rng.normal(0, 10, (seeds, items))
    y = rng.normal(0, 1, (seeds, 1)) + rng.normal(0, 10, (seeds, items))
    result = seed_item_test([x], [y])
    assert result.seed_var == pytest.approx((9.0, 1.0), rel=0.2)
    # items: var(item_A - item_B) / n plus the interaction each side carries / (S n)
    assert result.item_var == pytest.approx((400 + 100 / seeds + 100 / seeds) / items, rel=0.2)


def test_groups_sum_their_means_and_misaligned_groups_are_refused():
    a = [np.array([[100.0, 0.0], [100.0, 100.0]]), np.array([[0.0, 100.0, 100.0], [0.0, 0.0, 100.0]])]
    b = [np.zeros((2, 2)), np.zeros((2, 3))]
    assert seed_item_test(a, b).delta == pytest.approx(75.0 + 50.0)
    assert seed_item_test(a, b[:1]) is None and seed_item_test([a[0][:1]], [b[0]]) is None  # one seed: no test


def _linear(total: np.ndarray) -> float:
    return 100 * float(total[0] / total[1])  # a "corpus metric" that is the mean of the per-item scores


def test_corpus_path_estimates_what_the_per_item_test_computes():
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.2, 0.8, 150)
    a = (rng.random((3, 150)) < difficulty + 0.1) + rng.normal(0, 0.5, (3, 1))
    b = (rng.random((3, 150)) < difficulty).astype(float)
    exact = seed_item_test([100 * a], [100 * b])

    def seeds(x):
        return CorpusSeeds([str(i) for i in range(150)], np.stack([x, np.ones_like(x)], axis=-1), _linear)

    corpus = corpus_seed_item_test(seeds(a), seeds(b), rounds=2000)
    assert corpus.delta == pytest.approx(exact.delta)
    assert corpus.item_var == pytest.approx(exact.item_var, rel=0.15)
    assert corpus.seed_var == pytest.approx(exact.seed_var, rel=0.15, abs=1.0)
    assert corpus.p_value == pytest.approx(exact.p_value, rel=0.3, abs=0.01)
    again = corpus_seed_item_test(seeds(a), seeds(b), rounds=2000)
    assert again == corpus  # deterministic under the fixed RNG seed


def test_table_shows_both_p_values_and_marks_delta_only_by_the_seed_aware_one(tmp_path):
    rng = np.random.default_rng(8)
    difficulty = rng.uniform(0.3, 0.7, 600)
    for seed, shift in enumerate((0.0, 0.16, 0.2)):  # seeds that disagree, like relation-network's
        scores = (rng.random(600) < difficulty + shift).astype(float)
        write_record(tmp_path, make_record("relnet", seed, {str(i): s for i, s in enumerate(scores)}))
        ref = (rng.random(600) < difficulty).astype(float)
        write_record(tmp_path, make_record("text-bert", seed, {str(i): s for i, s in enumerate(ref)},
                                           config_hash="d" * 16))
    table = aggregate(read_records([tmp_path]).records, rounds=2000)
    row = next(r for r in table.rows if r["baseline"] == "relnet")
    assert row["p_value_items"] < 0.001 and row["p_value"] > 0.05
    assert row["delta_ci_low"] < 0 < row["delta_ci_high"]
    md = render(table, "md")
    assert "p (seeds+items) | p (items only) |" in md and "\\*" not in md.split("relnet")[1].split("\n")[0]
    assert "seeds+items" in render(table, "latex") and "p_value_items" in render(table, "csv")
