"""Retrieval scoring pieces against independent computations: two-stage vs full cross-encoder scoring,
pairs counted, chance levels, and the contrastive loss."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from vlbench.metrics.retrieval import retrieval_evaluate, retrieval_ranks
from vlbench.tasks.retrieval import chance_recalls, contrastive_loss, full_cross_scores, two_stage_scores


def _table_scorer(table: np.ndarray, calls: list[int]):
    def score(image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        calls.append(len(image_idx))
        return table[image_idx, text_idx]

    return score


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_full_cross_scores_every_pair_once(chunk: int) -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 9))
    calls: list[int] = []
    out = full_cross_scores(_table_scorer(table, calls), 5, 9, chunk)
    np.testing.assert_array_equal(out, table)
    assert sum(calls) == 45


@pytest.mark.parametrize("k", [9, 12, 100])
def test_two_stage_equals_full_cross_when_k_covers_all(k: int) -> None:
    rng = np.random.default_rng(1)
    n_images, n_texts = 6, 9
    dual, cross = rng.normal(size=(n_images, n_texts)), rng.normal(size=(n_images, n_texts))
    text_to_image = [i % n_images for i in range(n_texts)]
    calls: list[int] = []
    staged, pairs = two_stage_scores(dual, _table_scorer(cross, calls), k, chunk=4)
    full = full_cross_scores(_table_scorer(cross, []), n_images, n_texts)
    assert pairs == n_images * n_texts == sum(calls)
    np.testing.assert_array_equal(staged, full)
    for a, b in zip(retrieval_ranks(staged, text_to_image), retrieval_ranks(full, text_to_image)):
        np.testing.assert_array_equal(a, b)
    # the full ordering of every query, not only the rank of the correct answers
    np.testing.assert_array_equal(np.argsort(-staged, axis=1), np.argsort(-cross, axis=1))
    np.testing.assert_array_equal(np.argsort(-staged, axis=0), np.argsort(-cross, axis=0))


def test_two_stage_reranks_only_the_candidates() -> None:
    rng = np.random.default_rng(2)
    n_images, n_texts, k = 7, 11, 3
    dual, cross = rng.normal(size=(n_images, n_texts)), rng.normal(size=(n_images, n_texts))
    staged, pairs = two_stage_scores(dual, _table_scorer(cross, []), k)
    # the scored pairs, built independently: every image's k best texts, every text's k best images
    scored = set()
    for i in range(n_images):
        scored.update((i, int(t)) for t in np.argsort(-dual[i])[:k])
    for t in range(n_texts):
        scored.update((int(i), t) for i in np.argsort(-dual[:, t])[:k])
    assert pairs == len(scored)
    for i in range(n_images):
        order = list(np.argsort(-staged[i]))
        mine = [t for t in range(n_texts) if (i, t) in scored]
        rest = [t for t in range(n_texts) if (i, t) not in scored]
        # scored candidates first, by cross score; then the others, by dual score
        assert order == sorted(mine, key=lambda t: -cross[i, t]) + sorted(rest, key=lambda t: -dual[i, t])
    for t in range(n_texts):
        order = list(np.argsort(-staged[:, t]))
        mine = [i for i in range(n_images) if (i, t) in scored]
        rest = [i for i in range(n_images) if (i, t) not in scored]
        assert order == sorted(mine, key=lambda i: -cross[i, t]) + sorted(rest, key=lambda i: -dual[i, t])


def test_chance_recalls_match_exact_enumeration() -> None:
    # 3 images x 5 texts; enumerate every ranking of the texts for image->text, by hand-countable formula
    text_to_image = [0, 0, 1, 2, 2]
    got = chance_recalls(text_to_image, 3, ks=(1, 2))
    texts = range(5)
    expected_i2t = {}
    for k in (1, 2):
        hits = []
        for image, owned in ((0, {0, 1}), (1, {2}), (2, {3, 4})):
            subsets = list(combinations(texts, k))
            hits.append(sum(1 for s in subsets if owned & set(s)) / len(subsets))
        expected_i2t[k] = 100 * sum(hits) / 3
    assert got["i2t_R@1"] == pytest.approx(expected_i2t[1])
    assert got["i2t_R@2"] == pytest.approx(expected_i2t[2])
    assert got["t2i_R@1"] == pytest.approx(100 / 3) and got["t2i_R@2"] == pytest.approx(200 / 3)


def test_chance_recalls_agree_with_random_matrices() -> None:
    rng = np.random.default_rng(3)
    text_to_image = [i // 5 for i in range(100)]
    expected = chance_recalls(text_to_image, 20)
    draws = [retrieval_evaluate(rng.random((20, 100)), text_to_image) for _ in range(300)]
    for key in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10"):
        assert np.mean([d[key] for d in draws]) == pytest.approx(expected[key], abs=2.0), key


def test_contrastive_loss_is_clip_symmetric_cross_entropy() -> None:
    torch.manual_seed(0)
    text = F.normalize(torch.randn(6, 8), dim=-1)
    image = F.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(14.0)
    logits = scale * text @ image.t()
    target = torch.arange(6)
    reference = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    got = contrastive_loss(text, image, scale, keys=torch.arange(6))
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)


def test_contrastive_loss_counts_captions_of_one_image_as_positives() -> None:
    # two captions of image 0 and one of image 1; the image rows of pairs 0 and 1 are the same image
    text = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    image = F.normalize(torch.tensor([[1.0, 0.2], [1.0, 0.2], [0.1, 1.0]]), dim=-1)
    scale = torch.tensor(10.0)
    logits = (scale * text @ image.t()).double()
    # hand-built soft targets: half the mass on each copy of image 0
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=torch.double)
    t2i = -(targets * logits.log_softmax(1)).sum(1).mean()
    i2t = -(targets * logits.t().log_softmax(1)).sum(1).mean()
    got = contrastive_loss(text, image, scale, keys=torch.tensor([0, 0, 1]))
    assert got.item() == pytest.approx(((t2i + i2t) / 2).item(), rel=1e-6)
    assert math.isfinite(got.item())
