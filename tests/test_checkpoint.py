"""Checkpoints: a run interrupted anywhere goes on to exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training_fixtures import Regressor, RegressionTask, config, params
from vlbench.training.checkpoint import POINTER, CheckpointStore, checkpoint_dir_for, remove_checkpoints
from vlbench.training.device import get_accelerator
from vlbench.training.trainer import fit


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


class _StopsAt(RegressionTask):
    """Raises ``Interrupted`` at a given training step (counted across epochs)."""

    def __init__(self, stop_step: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stop_step, self.calls = stop_step, 0

    def loss(self, outputs, batch):
        if outputs.requires_grad:
            self.calls += 1
            if self.calls == self.stop_step:
                raise Interrupted()
        return super().loss(outputs, batch)


@pytest.fixture(scope="module")
def accelerator():
    return get_accelerator("cpu")


def _fit(task, cfg, accelerator, folder=None, run_id="abc", seed=0):
    model = Regressor(seed)
    result = fit(model, task, cfg, accelerator=accelerator, seed=seed, modalities=(), checkpoint_dir=folder,
                 run_id=run_id)
    return model, result


def _same_run(a, b):
    (model_a, result_a), (model_b, result_b) = a, b
    strip = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert strip(result_b.history) == strip(result_a.history)
    assert (result_b.best_epoch, result_b.best_validation, result_b.steps, result_b.stopped_early) == \
        (result_a.best_epoch, result_a.best_validation, result_a.steps, result_a.stopped_early)
    for x, y in zip(params(model_a), params(model_b)):
        assert torch.equal(x, y)


# interrupted mid-epoch after a checkpoint, at an epoch's first step, and with accumulation between checkpoints
@pytest.mark.parametrize("stop_step, overrides", [
    (12, {}),
    (17, {"checkpoint_every_steps": 0}),
    (9, {"grad_accum_steps": 2}),
    (14, {"patience": 1, "epochs": 8, "lr": 0.2}),
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_numbers(tmp_path, accelerator, stop_step, overrides):
    cfg = config(**{"epochs": 4, "checkpoint_every_steps": 3, **overrides})
    reference = _fit(RegressionTask(), cfg, accelerator)
    folder = tmp_path / "seed-0.ckpt"
    with pytest.raises(Interrupted):
        _fit(_StopsAt(stop_step), cfg, accelerator, folder)
    saved = json.loads((folder / (folder / POINTER).read_text().strip() / "state.json").read_text())
    assert 0 < saved["loop"]["step"] < stop_step and not saved["loop"]["finished"]
    resumed = _fit(RegressionTask(), cfg, accelerator, folder)
    _same_run(reference, resumed)
    assert resumed[1].resumed_from_step == saved["loop"]["step"]
    assert resumed[1].settings()["steps_this_run"] == reference[1].steps - saved["loop"]["step"]


def test_a_finished_checkpoint_skips_training_and_restores_the_best_weights(tmp_path, accelerator):
    cfg = config(epochs=3, lr=0.3)  # a high rate: the last epoch is not the best one
    folder = tmp_path / "ckpt"
    reference = _fit(RegressionTask(), cfg, accelerator, folder)
    assert reference[1].best_epoch < 3
    again = _fit(RegressionTask(), cfg, accelerator, folder)
    _same_run(reference, again)
    assert again[1].resumed_from_step == reference[1].steps and again[1].settings()["steps_this_run"] == 0


def test_a_checkpoint_of_another_config_or_seed_is_not_used(tmp_path, accelerator):
    cfg = config(epochs=2, checkpoint_every_steps=2)
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _fit(_StopsAt(11), cfg, accelerator, folder, run_id="old-config")
    fresh = _fit(RegressionTask(), cfg, accelerator, folder, run_id="new-config")
    assert fresh[1].resumed_from_step is None
    _same_run(_fit(RegressionTask(), cfg, accelerator), fresh)
    store = CheckpointStore(folder, "new-config", seed=1)
    assert store.load() is None and "seed" in store.ignored


def test_a_torn_checkpoint_is_ignored(tmp_path, accelerator):
    cfg = config(epochs=2, checkpoint_every_steps=2)
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _fit(_StopsAt(11), cfg, accelerator, folder)
    name = (folder / POINTER).read_text().strip()
    (folder / name / "training.pt").write_bytes(b"\0" * 100)  # a disk that lost the file's contents
    fresh = _fit(RegressionTask(), cfg, accelerator, folder)
    assert fresh[1].resumed_from_step is None
    _same_run(_fit(RegressionTask(), cfg, accelerator), fresh)


def test_only_the_latest_and_the_best_are_kept(tmp_path, accelerator):
    folder = tmp_path / "ckpt"
    (folder / ".tmp-step-00000001-dead").mkdir(parents=True)  # left by a kill during a write
    _fit(RegressionTask(), config(epochs=3, lr=0.3, checkpoint_every_steps=1), accelerator, folder)
    entries = sorted(p.name for p in folder.iterdir())
    state = json.loads((folder / (folder / POINTER).read_text().strip() / "state.json").read_text())
    assert entries == sorted([POINTER, (folder / POINTER).read_text().strip(), state["best"]])
    assert state["best"] != entries[0] and state["loop"]["finished"]


def test_checkpoint_folder_sits_next_to_the_record_and_is_removed(tmp_path):
    record = tmp_path / "vqa" / "shapes" / "vilt" / "seed-3.json"
    folder = checkpoint_dir_for(record)
    assert folder == record.parent / "seed-3.ckpt"
    (folder / "step-1").mkdir(parents=True)
    remove_checkpoints(record)
    assert not folder.exists()
    remove_checkpoints(record)  # absent is fine


def test_a_kill_in_the_middle_of_a_checkpoint_write_resumes_from_the_previous_one(tmp_path, accelerator, monkeypatch):
    from vlbench.training import checkpoint as checkpoint_module

    cfg = config(epochs=3, checkpoint_every_steps=2)
    reference = _fit(RegressionTask(), cfg, accelerator)
    folder = tmp_path / "ckpt"
    written = []
    original = checkpoint_module._write_file

    def dies_on_the_tenth_file(path, data):
        written.append(path)
        if len(written) == 10:  # three mid-epoch checkpoints of 3 files each, then the first epoch end dies
            raise Interrupted()
        original(path, data)

    monkeypatch.setattr(checkpoint_module, "_write_file", dies_on_the_tenth_file)
    with pytest.raises(Interrupted):
        _fit(RegressionTask(), cfg, accelerator, folder)
    monkeypatch.undo()
    assert not any(p.name.startswith(".tmp-") for p in folder.iterdir())  # the torn folder went with the error
    saved = json.loads((folder / (folder / POINTER).read_text().strip() / "state.json").read_text())
    resumed = _fit(RegressionTask(), cfg, accelerator, folder)
    assert resumed[1].resumed_from_step == saved["loop"]["step"] > 0
    _same_run(reference, resumed)


class _PassDependent(RegressionTask):
    """Targets shift with each training pass, as captioning rotates the references it trains on."""

    def __init__(self, stop_step: int = 0) -> None:
        super().__init__()
        self.passes, self.stop_step, self.calls = 0, stop_step, 0

    def loader(self, split, batch_size, modalities, *, shuffle=False, generator=None):
        if split == "train":
            self.passes += 1
        return super().loader(split, batch_size, modalities, shuffle=shuffle, generator=generator)

    def collate(self, split, indices, modalities):
        batch = super().collate(split, indices, modalities)
        if split == "train":
            batch["y"] = batch["y"] + 0.5 * self.passes
        return batch

    def loss(self, outputs, batch):
        if outputs.requires_grad:
            self.calls += 1
            if self.calls == self.stop_step:
                raise Interrupted()
        return super().loss(outputs, batch)


def test_a_resumed_run_is_in_the_same_training_pass(tmp_path, accelerator):
    cfg = config(epochs=4, checkpoint_every_steps=3)
    reference = _fit(_PassDependent(), cfg, accelerator)
    with pytest.raises(Interrupted):
        _fit(_PassDependent(stop_step=21), cfg, accelerator, tmp_path / "ckpt")  # in the third epoch
    task = _PassDependent()
    resumed = _fit(task, cfg, accelerator, tmp_path / "ckpt")
    assert task.passes == 4
    _same_run(reference, resumed)


def test_a_checkpoint_that_does_not_fit_the_model_leaves_it_untouched(tmp_path, accelerator):
    cfg = config(epochs=1)
    folder = tmp_path / "ckpt"
    _fit(RegressionTask(), cfg, accelerator, folder)  # a finished checkpoint of a 16-unit model
    model = Regressor(hidden=8)  # same config digest, another shape: only a code change can do this
    before = params(model)
    result = fit(model, RegressionTask(), cfg, accelerator=accelerator, seed=0, modalities=(), checkpoint_dir=folder,
                 run_id="abc")
    assert result.resumed_from_step is None and result.steps == 8
    fresh = Regressor(hidden=8)
    fit(fresh, RegressionTask(), cfg, accelerator=accelerator, seed=0, modalities=())
    assert all(torch.equal(a, b) for a, b in zip(params(model), params(fresh)))
    assert not all(torch.equal(a, b) for a, b in zip(params(model), before))
