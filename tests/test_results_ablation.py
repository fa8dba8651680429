"""The ablating image store: blank images, a seeded derangement, and the real store back afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets import Dataset, DatasetDict

from vlbench.data.base import ArrayImageStore, VLDataset
from vlbench.results.ablation import BLANK_VALUE, AblatedImageStore, ablated_images, ablation_block, derangement
from vlbench.specs import TaskSpec
from vlbench.tasks.base import TaskType


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
    shuffled = AblatedImageStore(store, "shuffled", seed=0, image_ids=store.ids())
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
    shuffled = AblatedImageStore(FileStore(), "shuffled", seed=1, image_ids=[100, 101, 102])
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

    block = ablation_block(dataset, "accuracy", 100.0, evaluate, image_ids=real.ids(), seed=0)
    assert block["real"] == 100.0 and block["blank"] == 0.0 and block["shuffled"] == 0.0
    assert dataset.images is real


def test_a_task_that_bypasses_the_store_gets_no_false_zero():
    dataset = SimpleNamespace(images=_store())
    block = ablation_block(dataset, "accuracy", 80.0, lambda: SimpleNamespace(metrics={"accuracy": 80.0}),
                           image_ids=[100, 101])
    assert block["blank"] is None and block["shuffled"] is None and "not applied" in block["note"]


class _RecordingStore(ArrayImageStore):
    """An in-memory store that remembers every id it was asked for."""

    def __init__(self, *args):
        super().__init__(*args)
        self.asked: list[int] = []

    def get(self, image_ids):
        self.asked.extend(int(i) for i in image_ids)
        return super().get(image_ids)


class _PairsTask(TaskType):
    table = "pairs"


def _split_dataset():
    """Images 0-19: train 0-11, validation 12-15, test 16-19 (test rows repeat images, as VQA questions do)."""
    splits = {"train": list(range(12)), "validation": [12, 13, 14, 15], "test": [16, 17, 18, 19, 19, 16]}
    tables = {"pairs": DatasetDict({name: Dataset.from_dict({"image_id": ids}) for name, ids in splits.items()})}
    pixels = np.stack([np.full((2, 2, 3), i, dtype=np.uint8) for i in range(20)])
    return VLDataset("pairs", "fp", _RecordingStore(pixels, list(range(20))), tables), splits


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_images_stay_within_the_test_split(seed):
    dataset, splits = _split_dataset()
    task = _PairsTask(TaskSpec(name="pairs", type="pairs", primary_metric="accuracy"), dataset)
    test_ids = task.image_ids("test")
    assert test_ids == [16, 17, 18, 19]
    real = dataset.images
    shown: dict[int, int] = {}

    def evaluate():  # what a task does: ask the dataset's store for each test example's image
        if dataset.images.mode == "blank":
            return SimpleNamespace(metrics={"accuracy": 0.0 if dataset.images.get([16]) is not None else 1.0})
        for image_id in splits["test"]:
            real.asked.clear()
            pixel = int(dataset.images.get([image_id])[0, 0, 0, 0])
            shown.setdefault(image_id, pixel)
            assert shown[image_id] == pixel  # one image per id within a pass
            assert real.asked == [pixel]  # pixel i is image i: the store was asked for the shown image
        return SimpleNamespace(metrics={"accuracy": 100.0 * np.mean([shown[i] == i for i in splits["test"]])})

    block = ablation_block(dataset, "accuracy", 100.0, evaluate, image_ids=test_ids, seed=seed)
    assert set(shown.values()) <= set(test_ids)  # never a train or validation image
    assert all(shown[i] != i for i in test_ids)  # no test example keeps its own image
    assert block["shuffled"] == 0.0 and block["shuffled_within"] == "test"


def test_an_image_outside_the_shuffled_split_is_refused_not_served_real():
    store = _store()
    shuffled = AblatedImageStore(store, "shuffled", seed=0, image_ids=[100, 101, 102])
    with pytest.raises(ValueError, match="image id 105"):
        shuffled.get([100, 105])


def test_a_one_image_test_split_records_no_shuffled_value():
    dataset = SimpleNamespace(images=_store())
    block = ablation_block(dataset, "accuracy", 80.0, lambda: SimpleNamespace(metrics={"accuracy": 80.0 if
                           dataset.images.get([100]) is not None else 0.0}), image_ids=[100, 100])
    assert block["shuffled"] is None and "fewer than 2" in block["note"]
