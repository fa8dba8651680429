"""Modality ablation at test time: score a trained model with real, blank and shuffled images.

The task reads pixels through ``dataset.images``; for one extra evaluation pass the store is replaced
by an :class:`AblatedImageStore` that returns a blank (mid-grey) image for every id, or the image of
another image of the evaluated split under a seeded derangement (no image keeps its own pixels, and no
test example is shown a training or validation image). The drop from real to blank or shuffled images is
the model's measured reliance on the image.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

__all__ = ["BLANK_VALUE", "AblatedImageStore", "derangement", "images_served_by", "ablated_images", "ablation_block"]

BLANK_VALUE = 128  # mid-grey: about 0 after the usual (x - 0.5) / 0.5 normalisation, no edges, no colour


def derangement(ids: Sequence[int], seed: int) -> dict[int, int]:
    """A seeded map id -> another id with no fixed point: one random cycle through the distinct ids.

    The ids are sorted first, so the map depends on the set of ids and the seed, not on their order.
    """
    distinct = sorted({int(i) for i in ids})
    if len(distinct) < 2:
        raise ValueError(f"a derangement needs at least 2 distinct image ids, got {len(distinct)}")
    order = np.random.default_rng(seed).permutation(np.asarray(distinct, dtype=np.int64))
    return {int(a): int(b) for a, b in zip(order, np.roll(order, -1))}


class AblatedImageStore:
    """An image store that answers for another store with blank or shuffled images (mode ``blank``/``shuffled``).

    ``shuffled`` deranges ``image_ids`` (the evaluated split's images): an id outside them is refused rather
    than served its real pixels, which would quietly raise the shuffled score.
    """

    def __init__(self, store: Any, mode: str, seed: int = 0, image_ids: Optional[Sequence[int]] = None) -> None:
        if mode not in ("blank", "shuffled"):
            raise ValueError(f"unknown ablation mode {mode!r}")
        if mode == "shuffled" and image_ids is None:
            raise ValueError("shuffled images need the evaluated split's image ids")
        self.store, self.mode = store, mode
        self.calls = 0  # how often the task asked for pixels: 0 means it read them some other way
        self.image_size = getattr(store, "image_size", None)
        self._map = derangement(image_ids, seed) if mode == "shuffled" else {}

    def ids(self) -> list[int]:
        """Every image id of the wrapped store."""
        return self.store.ids()

    def _swap(self, image_ids: Sequence[int]) -> list[int]:
        outside = [int(i) for i in image_ids if int(i) not in self._map]
        if outside:
            raise ValueError(f"image id {outside[0]} is not among the {len(self._map)} images being shuffled "
                             "(the evaluated split's); the task read an image of another split")
        return [self._map[int(i)] for i in image_ids]

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Pixels (B, H, W, 3) uint8: the same shape as the real ones, blank or another image's."""
        self.calls += 1
        if self.mode == "shuffled":
            return self.store.get(self._swap(image_ids))
        real = self.store.get(list(image_ids))
        return torch.full_like(real, BLANK_VALUE)

    def __getattr__(self, name: str) -> Any:
        # stores that decode one file at a time expose ``load``; answer it only when the real store does
        if name == "load" and hasattr(self.store, "load"):
            return self._load
        raise AttributeError(name)

    def _load(self, image_id: int) -> Any:
        self.calls += 1
        if self.mode == "shuffled":
            return self.store.load(self._swap([image_id])[0])
        real = np.asarray(self.store.load(int(image_id)))
        return np.full_like(real, BLANK_VALUE)


@contextlib.contextmanager
def images_served_by(dataset: Any, store: Any) -> Iterator[Any]:
    """Within the block, ``dataset.images`` is ``store`` (a store that answers for the real one; it is yielded)."""
    real = dataset.images
    dataset.images = store
    try:
        yield store
    finally:
        dataset.images = real


def ablated_images(dataset: Any, mode: str, seed: int = 0,
                   image_ids: Optional[Sequence[int]] = None) -> contextlib.AbstractContextManager[AblatedImageStore]:
    """Within the block, ``dataset.images`` answers with blank or shuffled images (the store is yielded)."""
    return images_served_by(dataset, AblatedImageStore(dataset.images, mode, seed, image_ids))


def ablation_block(dataset: Any, metric: str, real: float, evaluate: Callable[[], Any], image_ids: Sequence[int],
                   seed: int = 0, flips: Optional[Callable[[Any], Optional[dict[str, Any]]]] = None) -> dict[str, Any]:
    """The record's ``ablation`` block: ``evaluate()`` (an EvalResult) rerun with blank and shuffled images.

    ``image_ids`` are the evaluated split's images: the shuffled pass deranges within them only. A pass in
    which the task never asked the store for pixels (it cached them elsewhere) would score the real images
    again; its value is recorded as null with a note rather than as a false "no reliance". ``flips``, given the
    blank pass's EvalResult, makes the block's ``flips`` (:mod:`vlbench.results.flips`): the items the image flips.
    """
    block: dict[str, Any] = {"metric": metric, "real": real, "seed": seed, "blank_value": BLANK_VALUE,
                             "shuffled_within": "test"}
    for mode in ("blank", "shuffled"):
        if mode == "shuffled" and len(set(int(i) for i in image_ids)) < 2:
            block[mode], block["note"] = None, "fewer than 2 test images: nothing to shuffle"
            continue
        with ablated_images(dataset, mode, seed, image_ids) as store:
            result = evaluate()
        block[mode] = float(result.metrics[metric]) if store.calls else None
        if mode == "blank" and flips is not None and store.calls:
            block["flips"] = flips(result)
        if not store.calls:
            block["note"] = "the task did not read images through dataset.images; ablation not applied"
    return block
