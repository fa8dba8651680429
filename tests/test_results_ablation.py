"""The ablating image store: blank images, a seeded derangement, and the real store back afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vlbench.data.base import ArrayImageStore
from vlbench.results.ablation import BLANK_VALUE, AblatedImageStore, ablated_images, ablation_block, derangement


def _store(n: int = 6) -> ArrayImageStore:
    pixels = np.stack([np.full((4, 4, 3), 10 * (i + 1), dtype=np.uint8) for i in range(n)])
    return ArrayImageStore(pixels, [100 + i for i in range(n)])


def test_derangement_moves_every_image_and_is_seeded():
    ids = list(range(50))
    mapping = derangement(ids, seed=3)
    assert sorted(mapping) == ids and sorted(mapping.values()) == ids
    assert all(mapping[i] != i for i in ids)
    assert mapping == derangement(ids, seed=3) and mapping != derangement(ids, seed=4)


def test_blank_and_shuffled_pixels():
    store = _store()
    blank = AblatedImageStore(store, "blank").get([101, 103])
    assert blank.shape == (2, 4, 4, 3) and blank.dtype == torch.uint8 and bool((blank == BLANK_VALUE).all())
    shuffled = AblatedImageStore(store, "shuffled", seed=0)
    out = shuffled.get(store.ids())
    real = store.get(store.ids())
    assert all(not torch.equal(out[i], real[i]) for i in range(len(real)))  # no example keeps its image
    assert sorted(out[:, 0, 0, 0].tolist()) == sorted(real[:, 0, 0, 0].tolist())  # the same images, moved
    assert not hasattr(shuffled, "load")  # the in-memory store has no per-file loader to imitate


def test_per_file_stores_are_ablated_too():
    class FileStore:
        image_size = 4

        def __init__(self):
            self.inner = _store()

        def ids(self):
            return self.inner.ids()

        def get(self, ids):
            return self.inner.get(ids)

        def load(self, image_id):
            return self.inner.get([image_id])[0].numpy()

    blank = AblatedImageStore(FileStore(), "blank")
    assert (blank.load(102) == BLANK_VALUE).all()
    shuffled = AblatedImageStore(FileStore(), "shuffled", seed=1)
    assert shuffled.load(102)[0, 0, 0] != 30


def test_the_real_store_comes_back_and_the_block_records_both_passes():
    dataset = SimpleNamespace(images=_store())
    real = dataset.images
    with pytest.raises(RuntimeError):
        with ablated_images(dataset, "blank"):
            assert isinstance(dataset.images, AblatedImageStore)
            raise RuntimeError("evaluation failed")
    assert dataset.images is real

    def evaluate():  # "accuracy": how many images are still the real ones
        seen = dataset.images.get(real.ids())
        return SimpleNamespace(metrics={"accuracy": 100.0 * float((seen == real.get(real.ids())).all(-1).all(-1).all(-1).float().mean())})

    block = ablation_block(dataset, "accuracy", 100.0, evaluate, seed=0)
    assert block["real"] == 100.0 and block["blank"] == 0.0 and block["shuffled"] == 0.0
    assert dataset.images is real


def test_a_task_that_bypasses_the_store_gets_no_false_zero():
    dataset = SimpleNamespace(images=_store())
    block = ablation_block(dataset, "accuracy", 80.0, lambda: SimpleNamespace(metrics={"accuracy": 80.0}))
    assert block["blank"] is None and block["shuffled"] is None and "not applied" in block["note"]
