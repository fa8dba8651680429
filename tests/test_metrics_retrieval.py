"""Retrieval recall against VSE++'s evaluation code (stored outputs) and an independent brute force."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vlbench.errors import DataError
from vlbench.metrics import retrieval
from vlbench.metrics.retrieval import retrieval_evaluate
from vlbench.registry import METRICS

DATA = json.loads((Path(__file__).parent / "data" / "metrics" / "retrieval_vsepp.json").read_text())
CASES = {c["name"]: c for c in DATA["cases"]}
KEYS = ("R@1", "R@5", "R@10", "medr", "meanr")


def _case(name: str) -> tuple[np.ndarray, list[int], dict]:
    c = CASES[name]
    return np.array(c["similarity"], dtype=c["dtype"]), c["text_to_image"], c["expected"]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_vsepp(name: str) -> None:
    sim, t2i, expected = _case(name)
    got = retrieval_evaluate(sim, t2i)
    assert [got[f"i2t_{k}"] for k in KEYS] == expected["i2t"]
    assert [got[f"t2i_{k}"] for k in KEYS] == expected["t2i"]
    assert got["rsum"] == expected["rsum"]
    assert [got["per_example"]["i2t_rank"][i] - 1 for i in range(sim.shape[0])] == expected["i2t_ranks0"]
    assert [got["per_example"]["t2i_rank"][t] - 1 for t in range(sim.shape[1])] == expected["t2i_ranks0"]


def test_even_median_floors_the_midpoint() -> None:
    # hard_50 has 50 image queries whose two middle 0-based ranks average to x.5
    sim, t2i, expected = _case("hard_50")
    assert np.median(expected["i2t_ranks0"]) % 1 == 0.5
    assert retrieval_evaluate(sim, t2i)["i2t_medr"] == math.floor(np.median(expected["i2t_ranks0"])) + 1


def test_text_order_does_not_matter() -> None:
    sim, t2i, expected = _case("odd_37")
    perm = np.random.default_rng(0).permutation(sim.shape[1])
    got = retrieval_evaluate(sim[:, perm], [t2i[p] for p in perm])
    assert [got[f"i2t_{k}"] for k in KEYS] == expected["i2t"]
    assert [got[f"t2i_{k}"] for k in KEYS] == expected["t2i"]
    assert [got["per_example"]["t2i_rank"][k] - 1 for k in range(len(perm))] == [expected["t2i_ranks0"][p] for p in perm]


def _brute_force(sim: np.ndarray, t2i: list[int]) -> tuple[dict[int, int], list[int]]:
    """Independent reference: sort every query's candidates, worst position among equal scores."""
    i2t = {}
    for i in range(sim.shape[0]):
        own = [t for t, img in enumerate(t2i) if img == i]
        if not own:
            continue
        best = max(sim[i, t] for t in own)
        i2t[i] = sum(1 for t in range(sim.shape[1]) if t not in own and sim[i, t] >= best)
    t2i_ranks = [sum(1 for j in range(sim.shape[0]) if j != g and sim[j, t] >= sim[g, t]) for t, g in enumerate(t2i)]
    return i2t, t2i_ranks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_number_of_captions_and_ties_match_brute_force(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    n_images = 30
    t2i = [int(x) for x in rng.integers(0, n_images, size=70)]  # some images get 0 texts, some many
    sim = rng.integers(0, 6, size=(n_images, 70)).astype(np.float32)  # many ties
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 97)  # exercise the block loops
    got = retrieval_evaluate(sim, t2i)
    i2t, t2i_ranks = _brute_force(sim, t2i)
    assert {i: r - 1 for i, r in got["per_example"]["i2t_rank"].items()} == i2t
    assert [got["per_example"]["t2i_rank"][t] - 1 for t in range(70)] == t2i_ranks
    assert got["i2t_queries"] == len(set(t2i))
    ranks = np.array(list(i2t.values()), dtype=float)
    assert got["i2t_R@5"] == 100.0 * (ranks < 5).sum() / len(ranks)
    assert got["i2t_medr"] == math.floor(np.median(ranks)) + 1
    assert got["i2t_meanr"] == pytest.approx(ranks.mean() + 1)


def test_constant_matrix_scores_worst_not_best() -> None:
    got = retrieval_evaluate(np.zeros((4, 8)), [0, 0, 1, 1, 2, 2, 3, 3])
    assert got["i2t_R@1"] == 0.0 and got["t2i_R@1"] == 0.0
    assert got["t2i_medr"] == 4.0 and got["i2t_medr"] == 7.0


def test_hand_computed_small_case() -> None:
    sim = np.array([[0.9, 0.1, 0.99], [0.2, 0.7, 0.95]])
    got = retrieval_evaluate(sim, [0, 1, 1])
    assert got["per_example"] == {"i2t_rank": {0: 2, 1: 1}, "t2i_rank": {0: 1, 1: 1, 2: 2}}
    assert got["i2t_R@1"] == 50.0 and got["i2t_medr"] == 1.0 and got["i2t_meanr"] == 1.5
    assert got["t2i_R@1"] == pytest.approx(200 / 3) and got["t2i_medr"] == 1.0
    assert got["rsum"] == pytest.approx(50 + 100 + 100 + 200 / 3 + 100 + 100)
    assert METRICS.get("retrieval_recall") is retrieval_evaluate


@pytest.mark.parametrize(
    ("sim", "t2i", "message"),
    [
        (np.zeros((2, 3)), [0, 1], "3 text columns but text_to_image lists 2"),
        (np.zeros(3), [0, 1, 2], "2-D numeric array"),
        (np.zeros((2, 2)), [0, 2], "text_to_image[1] = 2 is not an image index in [0, 2)"),
        (np.array([[np.nan, 0.0], [0.0, 1.0]]), [0, 1], "1 NaN values"),
        (np.zeros((0, 0)), [], "empty"),
    ],
)
def test_bad_inputs(sim: np.ndarray, t2i: list[int], message: str) -> None:
    with pytest.raises(DataError) as info:
        retrieval_evaluate(sim, t2i)
    assert message in str(info.value)
