"""Image-text retrieval recall with the VSE++ (fartashf/vsepp ``evaluation.py``) conventions.

* image -> text: an image's rank is the best (smallest) rank of any of its captions; images may have any
  number of captions (an image with none is only a text -> image candidate, not an image query);
* text -> image: a text's rank is the rank of its one image;
* ``R@K`` = 100 * (#queries with 0-based rank < K) / #queries; ``medr`` = floor(median of 0-based ranks) + 1
  (so an even count averages the two middle ranks before the floor); ``meanr`` = mean 0-based rank + 1;
  ``rsum`` = the six recalls added up;
* ties: a wrong candidate whose similarity EQUALS the best correct one counts as ranked above it
  (pessimistic). VSE++ breaks ties by the order of ``numpy.argsort``, which depends on indices and on the
  sort algorithm; with untied scores both give the same ranks, and a constant (degenerate) similarity
  matrix scores worst here instead of best.

Example:
    >>> import numpy as np
    >>> sim = np.array([[0.9, 0.1, 0.99], [0.2, 0.7, 0.95]])   # 2 images x 3 texts
    >>> r = retrieval_evaluate(sim, text_to_image=[0, 1, 1])
    >>> r["i2t_R@1"], r["t2i_R@1"], r["per_example"]["t2i_rank"]
    (50.0, 66.66666666666667, {0: 1, 1: 1, 2: 2})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlbench.errors import DataError

__all__ = ["retrieval_evaluate", "retrieval_ranks", "RECALL_AT"]

RECALL_AT = (1, 5, 10)
_CHUNK_ELEMENTS = 1 << 24  # rows per block chosen so a block stays near 16M cells (memory, not speed)


def _validate(similarity: Any, text_to_image: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.dtype.kind not in "fiu":
        raise DataError(f"the similarity matrix must be a 2-D numeric array (images x texts), got shape {sim.shape}.")
    n_images, n_texts = sim.shape
    t2i = np.asarray(text_to_image)
    if t2i.ndim != 1 or (t2i.size and t2i.dtype.kind not in "iu"):
        raise DataError("text_to_image must be a flat list of integer image indices, one per text.")
    if n_images == 0 or n_texts == 0:
        raise DataError(f"the similarity matrix is empty (shape {sim.shape}).")
    if t2i.size != n_texts:
        raise DataError(
            f"the similarity matrix has {n_texts} text columns but text_to_image lists {t2i.size} texts; "
            "the matrix must be images x texts."
        )
    bad = np.flatnonzero((t2i < 0) | (t2i >= n_images))
    if bad.size:
        raise DataError(
            f"text_to_image[{bad[0]}] = {t2i[bad[0]]} is not an image index in [0, {n_images}) "
            f"({bad.size} such texts)."
        )
    if sim.dtype.kind == "f" and np.isnan(sim).any():
        raise DataError(f"the similarity matrix contains {int(np.isnan(sim).sum())} NaN values.")
    return sim, t2i.astype(np.int64)


def retrieval_ranks(similarity: Any, text_to_image: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks: per image (-1 for an image without texts) and per text, with pessimistic ties."""
    sim, t2i = _validate(similarity, text_to_image)
    n_images, n_texts = sim.shape
    i2t = np.full(n_images, -1, dtype=np.int64)
    has_text = np.bincount(t2i, minlength=n_images) > 0
    rows = max(1, _CHUNK_ELEMENTS // n_texts)
    for start in range(0, n_images, rows):
        block = sim[start : start + rows]
        own = t2i[None, :] == np.arange(start, start + block.shape[0])[:, None]
        best = np.where(own, block, -np.inf).max(axis=1)
        # wrong texts scoring at least as high as the best own text sit above it
        i2t[start : start + block.shape[0]] = ((block >= best[:, None]) & ~own).sum(axis=1)
    i2t[~has_text] = -1
    t2i_rank = np.empty(n_texts, dtype=np.int64)
    cols = max(1, _CHUNK_ELEMENTS // n_images)
    for start in range(0, n_texts, cols):
        block = sim[:, start : start + cols]
        idx = np.arange(block.shape[1])
        own_score = block[t2i[start : start + block.shape[1]], idx]
        # minus one: the correct image itself satisfies >=
        t2i_rank[start : start + block.shape[1]] = (block >= own_score[None, :]).sum(axis=0) - 1
    return i2t, t2i_rank


def _summary(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    # float64 ranks and these exact expressions, as in VSE++, so the floats agree bit for bit
    r = ranks.astype(np.float64)
    out = {f"{prefix}_R@{k}": 100.0 * len(np.where(r < k)[0]) / len(r) for k in RECALL_AT}
    out[f"{prefix}_medr"] = float(np.floor(np.median(r)) + 1)
    out[f"{prefix}_meanr"] = float(r.mean() + 1)
    return out


def retrieval_evaluate(similarity: Any, text_to_image: Sequence[int]) -> dict[str, Any]:
    """i2t/t2i R@1/5/10 (percent), medr, meanr, rsum, and 1-based per-query ranks under ``per_example``."""
    i2t, t2i = retrieval_ranks(similarity, text_to_image)
    queried = np.flatnonzero(i2t >= 0)
    out: dict[str, Any] = {}
    out.update(_summary(i2t[queried], "i2t"))
    out.update(_summary(t2i, "t2i"))
    recalls = [out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in RECALL_AT]
    rsum = recalls[0]
    for value in recalls[1:]:
        rsum += value
    out["rsum"] = rsum
    out["num_images"], out["num_texts"], out["i2t_queries"] = int(i2t.size), int(t2i.size), int(queried.size)
    out["per_example"] = {
        "i2t_rank": {int(i): int(i2t[i]) + 1 for i in queried},
        "t2i_rank": {int(t): int(r) + 1 for t, r in enumerate(t2i)},
    }
    return out
