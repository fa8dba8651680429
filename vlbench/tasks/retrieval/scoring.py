"""Scoring the N images x M texts of a split (pure, so that tests can check them against independent computations).

A pair scorer maps aligned image and text index arrays to one score per pair; the full cross matrix and
the two-stage re-ranking call it in chunks (shared among processes), and ``chance_recalls`` is the
expected recall of a random ranking.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from vlbench.progress import track

__all__ = ["PairScorer", "full_cross_scores", "two_stage_scores", "chance_recalls"]

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _score_in_chunks(score_pairs: PairScorer, image_idx: np.ndarray, text_idx: np.ndarray, chunk: int,
                     label: str) -> np.ndarray:
    """``score_pairs`` over aligned index arrays, ``chunk`` pairs per call; with several processes each scores
    every N-th chunk and all of them receive every score."""
    from vlbench.distributed import gather_list, rank, world_size

    out = np.empty(image_idx.size, dtype=np.float64)
    starts = list(range(0, image_idx.size, chunk))
    mine = starts[rank()::world_size()]
    parts = []
    for start in track(mine, len(mine), label):
        stop = start + chunk
        out[start:stop] = score_pairs(image_idx[start:stop], text_idx[start:stop])
        parts.append((start, out[start:stop]))
    if world_size() > 1:
        for start, values in gather_list(parts):
            out[start:start + values.size] = values
    return out


def full_cross_scores(score_pairs: PairScorer, n_images: int, n_texts: int, chunk: int = 1024) -> np.ndarray:
    """Every (image, text) pair through ``score_pairs(image_idx, text_idx) -> scores``: an (N, M) float64 matrix."""
    cells = np.arange(n_images * n_texts)
    return _score_in_chunks(score_pairs, cells // n_texts, cells % n_texts, chunk,
                            "cross-scoring pairs").reshape(n_images, n_texts)


def two_stage_scores(dual: np.ndarray, score_pairs: PairScorer, k: int, chunk: int = 1024) -> tuple[np.ndarray, int]:
    """Re-rank each query's top-``k`` dual candidates with the cross-encoder; returns (matrix, pairs scored).

    The cross-encoder scores the union of every image's top-k texts and every text's top-k images (each
    pair once). In the returned matrix the scored pairs carry their cross scores shifted above every
    unscored pair, which keep their dual scores: each query's list is its scored candidates ordered by
    the cross-encoder, then the rest ordered by the dual encoder. When every pair is scored the matrix is
    exactly the full cross-encoder matrix.
    """
    dual = np.asarray(dual, dtype=np.float64)
    n_images, n_texts = dual.shape
    selected = np.zeros(dual.shape, dtype=bool)
    k_texts, k_images = min(k, n_texts), min(k, n_images)
    # stable sorts: ties in the dual scores pick candidates by index, the same way on every platform
    top_texts = np.argsort(-dual, axis=1, kind="stable")[:, :k_texts]
    top_images = np.argsort(-dual, axis=0, kind="stable")[:k_images, :]
    selected[np.repeat(np.arange(n_images), k_texts), top_texts.reshape(-1)] = True
    selected[top_images.reshape(-1), np.tile(np.arange(n_texts), k_images)] = True
    image_idx, text_idx = np.nonzero(selected)
    cross = _score_in_chunks(score_pairs, image_idx, text_idx, chunk, "re-ranking pairs")
    if selected.all():
        out = np.empty_like(dual)
        out[image_idx, text_idx] = cross
        return out, int(image_idx.size)
    out = dual.copy()
    offset = float(dual[~selected].max() - cross.min()) + 1.0
    out[image_idx, text_idx] = cross + max(offset, 0.0)
    return out, int(image_idx.size)


def chance_recalls(text_to_image: list[int], n_images: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Expected R@K (percent) and rsum of a uniformly random ranking (images with c of M texts: 1 - C(M-c,K)/C(M,K))."""
    counts = np.bincount(np.asarray(text_to_image, dtype=np.int64), minlength=n_images)
    n_texts = len(text_to_image)
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, n_texts)
        queried = counts[counts > 0]
        miss = [math.comb(n_texts - c, kk) / math.comb(n_texts, kk) for c in queried]
        out[f"i2t_R@{k}"] = 100.0 * (1.0 - float(np.mean(miss))) if len(miss) else 0.0
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * min(k, n_images) / n_images
    out["rsum"] = sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in ks)
    return out
