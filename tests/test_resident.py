"""Training data kept on the device: the same batches, order and numbers as collating each batch, or no change."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.training_fixtures import Regressor, RegressionTask, config
from vlbench.cli.main import main
from vlbench.data.images import SquareResize
from vlbench.data.resident import DeviceSplits, build_resident, device_split
from vlbench.distributed import eval_batches
from vlbench.data.text import build_word_vocab, word_level_tokenizer
from vlbench.registry import TASK_TYPES
from vlbench.runner import load_dataset
from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config
from vlbench.training.device import get_accelerator
from vlbench.training.trainer import fit

CPU = torch.device("cpu")
BUDGET = 2**30


@pytest.fixture(scope="module")
def vqa(cache_dir):
    """The tiny embedded VQA task, tokenized with a word-level vocabulary."""
    overrides = [a for a in TINY_DATA if a != "--set"]
    cfg = resolve_run_config(load_task_spec("vqa"), load_baseline_spec("vilt"), overrides=overrides)
    task = TASK_TYPES.get(cfg.task.type)(cfg.task, load_dataset(cfg.dataset, cfg.task.data, cache_dir, quiet=True))
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    yield task
    task.image_transform = None


def _same_batches(task, resident, modalities, batch_size, epochs=2):
    """Two passes: every batch equal in value, dtype and strides; the generators end in the same state."""
    collating, indexing = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    count = 0
    for _ in range(epochs):
        loader = task.loader("train", batch_size, modalities, shuffle=True, generator=collating)
        positions = task.index_loader("train", batch_size, shuffle=True, generator=indexing)
        pairs = list(zip(loader, positions, strict=True))
        for expected, index in pairs:
            got = resident.batch(index)
            assert set(got) == set(expected)
            for key, value in expected.items():
                assert torch.equal(got[key], value), key
                assert (got[key].dtype, got[key].stride()) == (value.dtype, value.stride()), key
        assert torch.equal(collating.get_state(), indexing.get_state())
        count += len(pairs)
    return count


@pytest.mark.parametrize("modalities", [("text",), ("text", "image"), ("image",)])
def test_resident_batches_are_the_collated_batches(vqa, modalities):
    resident = vqa.resident_split("train", modalities, CPU, BUDGET)
    assert resident is not None and len(resident) == vqa.num_examples("train")
    assert ("pixel_values" in resident.images) == ("image" in modalities)
    # 212 questions in batches of 20: a short last batch, and batches of different longest questions
    assert _same_batches(vqa, resident, modalities, 20) == 2 * 11


def test_retrieval_batches_are_the_collated_batches(cache_dir):
    # each caption brings its own image's pixels, image id and image key
    from vlbench.data.shapes import build_shapes
    from vlbench.tasks.retrieval import RetrievalTask

    dataset = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache_dir, quiet=True)
    task = RetrievalTask(load_task_spec("retrieval"), dataset)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    resident = task.resident_split("train", ("text", "image"), CPU, BUDGET)
    assert resident is not None and {"image_keys", "image_ids"} <= set(resident.rows)
    assert _same_batches(task, resident, ("text", "image"), 32) == 2 * 8  # 240 captions


def test_resized_images_keep_their_values_and_layout(vqa):
    vqa.image_transform = SquareResize(40, mean=0.4, std=0.3)  # bilinear interpolation per batch in collate
    try:
        resident = vqa.resident_split("train", ("text", "image"), CPU, BUDGET)
        assert resident.images["pixel_values"].shape[1:] == (40, 40, 3)  # kept channels-last, as collate has them
        _same_batches(vqa, resident, ("text", "image"), 32, epochs=1)
    finally:
        vqa.image_transform = None


@pytest.mark.parametrize("modalities", [("text",), ("text", "image")])
def test_evaluation_passes_read_a_run_s_splits_from_the_device(vqa, modalities):
    expected = list(vqa.batches("validation", 25, modalities))
    splits = DeviceSplits(vqa, CPU, BUDGET)
    assert device_split(vqa, "validation", modalities) is None  # no run's block open: collated
    with splits.reading():
        got = list(eval_batches(vqa, "validation", 25, modalities))
        assert device_split(vqa, "validation", modalities) is splits.get("validation", modalities) is not None
    assert device_split(vqa, "validation", modalities) is None
    n = vqa.num_examples("validation")
    assert n % 25 and len(got) == len(expected) == -(-n // 25)  # the last batch is short
    for a, b in zip(expected, got):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]) and a[key].stride() == b[key].stride(), key
    assert splits.left == BUDGET - splits.get("validation", modalities).nbytes  # one budget for the run's splits


class _PaddingTransform(SquareResize):
    """Images with a pixel mask, as processors that pad each batch to its largest image give them."""

    def from_uint8(self, pixels):
        out = super().from_uint8(pixels)
        return {**out, "pixel_mask": torch.ones(out["pixel_values"].shape[0], self.size, self.size, dtype=torch.long)}


def test_what_cannot_stay_on_the_device_is_collated_as_before(vqa):
    assert vqa.resident_split("train", ("text",), CPU, budget=1000) is None  # over the budget
    vqa.image_transform = _PaddingTransform(64)
    try:
        assert vqa.resident_split("train", ("text", "image"), CPU, BUDGET) is None  # per-batch padding
        assert vqa.resident_split("train", ("text",), CPU, BUDGET) is not None  # no images read: unaffected
    finally:
        vqa.image_transform = None
    assert build_resident(vqa, "train", ("image",), CPU, BUDGET, image_ids=None) is None  # no image ids given


class _ResidentRegression(RegressionTask):
    def resident_split(self, split, modalities, device, budget):
        return build_resident(self, split, modalities, device, budget)


@pytest.mark.parametrize("cfg, used", [
    (config(), True),
    (config(data_on_device=False), False),
    (config(num_workers=2), False),  # workers asked for: the loader collates in them
    (config(num_workers=2, data_on_device=True), True),
])
def test_the_setting_decides_and_the_result_says_which_path_ran(cfg, used):
    accelerator = get_accelerator("cpu")
    loader_model = Regressor(0)
    loader_run = fit(loader_model, RegressionTask(n_train=60), config(), accelerator=accelerator, seed=0,
                     modalities=())
    model = Regressor(0)
    result = fit(model, _ResidentRegression(n_train=60), cfg, accelerator=accelerator, seed=0, modalities=())
    assert result.settings()["data_on_device"] is used
    assert loader_run.settings()["data_on_device"] is False  # the task type cannot: nothing changes
    strip = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert strip(result.history) == strip(loader_run.history)
    for a, b in zip(loader_model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_a_run_gives_the_same_record_either_way(tmp_path, capsys):
    args = ["run", "--task", "vqa", "--baseline", "vilt", "--epochs", "2", "--batch-size", "16", "--quiet",
            "--set", "training.patience=0", *TINY_DATA, "--set", "baseline.config.hidden_size=32",
            "--set", "baseline.config.num_layers=1", "--set", "baseline.config.num_heads=2",
            "--set", "baseline.config.intermediate_size=64"]
    records = {}
    for flag in ("--data-on-device", "--no-data-on-device"):
        assert main([*args, flag, "--results-dir", str(tmp_path / flag)]) == 0
        records[flag] = json.loads((tmp_path / flag / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())
    on, off = records["--data-on-device"], records["--no-data-on-device"]
    assert (on["training"]["data_on_device"], off["training"]["data_on_device"]) == (True, False)
    assert on["config_hash"] == off["config_hash"]  # a speed setting: the same run
    history = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["training"]["history"]]  # noqa: E731
    assert history(on) == history(off)
    assert on["test"] == off["test"] and on["per_example"] == off["per_example"]
