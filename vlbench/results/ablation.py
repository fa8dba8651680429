"""Modality ablation at test time: score a trained model with real, blank and shuffled images.

The task reads pixels through ``dataset.images``; for one extra evaluation pass the store is replaced
by an :class:`AblatedImageStore` that returns a blank (mid-grey) image for every id, or the image of
another id under a seeded derangement (no image keeps its own pixels). The drop from real to blank or
shuffled images is the model's measured reliance on the image.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

__all__ = ["BLANK_VALUE", "AblatedImageStore", "derangement", "ablated_images", "ablation_block"]

BLANK_VALUE = 128  # mid-grey: about 0 after the usual (x - 0.5) / 0.5 normalisation, no edges, no colour


def derangement(ids: Sequence[int], seed: int) -> dict[int, int]:
    """A seeded map id -> another id with no fixed point: one random cycle through all ids."""
    order = np.random.default_rng(seed).permutation(np.asarray(list(ids), dtype=np.int64))
    return {int(a): int(b) for a, b in zip(order, np.roll(order, -1))}


class AblatedImageStore:
    """An image store that answers for another store with blank or shuffled images (mode ``blank``/``shuffled``)."""

    def __init__(self, store: Any, mode: str, seed: int = 0) -> None:
        if mode not in ("blank", "shuffled"):
            raise ValueError(f"unknown ablation mode {mode!r}")
        self.store, self.mode = store, mode
        self.calls = 0  # how often the task asked for pixels: 0 means it read them some other way
        self.image_size = getattr(store, "image_size", None)
        self._map = derangement(store.ids(), seed) if mode == "shuffled" else {}

    def ids(self) -> list[int]:
        """Every image id of the wrapped store."""
        return self.store.ids()

    def _swap(self, image_ids: Sequence[int]) -> list[int]:
        return [self._map.get(int(i), int(i)) for i in image_ids]

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
            return self.store.load(self._map.get(int(image_id), int(image_id)))
        real = np.asarray(self.store.load(int(image_id)))
        return np.full_like(real, BLANK_VALUE)


@contextlib.contextmanager
def ablated_images(dataset: Any, mode: str, seed: int = 0) -> Iterator[AblatedImageStore]:
    """Within the block, ``dataset.images`` answers with blank or shuffled images (the store is yielded)."""
    real = dataset.images
    store = AblatedImageStore(real, mode, seed)
    dataset.images = store
    try:
        yield store
    finally:
        dataset.images = real


def ablation_block(dataset: Any, metric: str, real: float, evaluate: Callable[[], Any], seed: int = 0) -> dict[str, Any]:
    """The record's ``ablation`` block: ``evaluate()`` (an EvalResult) rerun with blank and shuffled images.

    A pass in which the task never asked the store for pixels (it cached them elsewhere) would score the
    real images again; its value is recorded as null with a note rather than as a false "no reliance".
    """
    block: dict[str, Any] = {"metric": metric, "real": real, "seed": seed, "blank_value": BLANK_VALUE}
    for mode in ("blank", "shuffled"):
        with ablated_images(dataset, mode, seed) as store:
            value = float(evaluate().metrics[metric])
        block[mode] = value if store.calls else None
        if not store.calls:
            block["note"] = "the task did not read images through dataset.images; ablation not applied"
    return block
