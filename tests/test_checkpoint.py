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


def flip_bytes(path, count=64):
    """Invert ``count`` bytes in the middle of a file (its length stays the same: only a hash can tell)."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - count // 2)
    for i in range(start, min(len(data), start + count)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_state(path, change):
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


CORRUPTIONS = {  # what happens to one checkpoint folder on disk
    "flipped model": lambda f: flip_bytes(f / "model.safetensors"),
    "flipped training": lambda f: flip_bytes(f / "training.pt"),
    "zeroed training": lambda f: (f / "training.pt").write_bytes(b"\0" * 100),  # a disk that lost the contents
    "unknown state key": lambda f: _edit_state(f / "state.json", lambda s: s["loop"].update(surprise=1)),
    "skip_batches edited": lambda f: _edit_state(f / "state.json", lambda s: s["loop"].update(skip_batches=1)),
    "missing file": lambda f: (f / "training.pt").unlink(),
    "extra file": lambda f: (f / "notes.txt").write_text("hi"),
    "no manifest": lambda f: (f / "manifest.json").unlink(),
    "manifest not JSON": lambda f: (f / "manifest.json").write_text("{"),
}


def _interrupted(folder, accelerator, cfg, stop_step=11):
    with pytest.raises(Interrupted):
        _fit(_StopsAt(stop_step), cfg, accelerator, folder)
    latest = (folder / POINTER).read_text().strip()
    steps = sorted(p.name for p in folder.iterdir() if p.name.startswith("step-"))
    assert steps[-1] == latest and len(steps) == 2  # the newest and the one before it
    return latest, steps[0]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_checkpoint_that_fails_its_check_is_set_aside_and_the_one_before_resumed(tmp_path, accelerator, capsys,
                                                                                    corruption):
    cfg = config(epochs=2, checkpoint_every_steps=2)
    folder = tmp_path / "ckpt"
    latest, previous = _interrupted(folder, accelerator, cfg)
    CORRUPTIONS[corruption](folder / latest)
    capsys.readouterr()
    resumed = _fit(RegressionTask(), cfg, accelerator, folder)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and latest in warnings[0], warnings
    assert (tmp_path / "ckpt.rejected" / latest).is_dir()  # moved aside, not deleted
    assert resumed[1].resumed_from_step == int(previous.split("-")[1])
    _same_run(_fit(RegressionTask(), cfg, accelerator), resumed)


def test_with_no_checkpoint_passing_its_check_the_run_starts_afresh(tmp_path, accelerator, capsys):
    cfg = config(epochs=2, checkpoint_every_steps=2)
    folder = tmp_path / "ckpt"
    latest, previous = _interrupted(folder, accelerator, cfg)
    flip_bytes(folder / latest / "model.safetensors")
    _edit_state(folder / previous / "state.json", lambda s: s["loop"].update(skip_batches=3))
    capsys.readouterr()
    fresh = _fit(RegressionTask(), cfg, accelerator, folder)
    assert len([line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]) == 2
    assert fresh[1].resumed_from_step is None
    assert sorted(p.name for p in (tmp_path / "ckpt.rejected").iterdir()) == sorted([latest, previous])
    _same_run(_fit(RegressionTask(), cfg, accelerator), fresh)


def test_corrupt_best_weights_set_aside_the_checkpoints_that_need_them(tmp_path, accelerator, capsys):
    cfg = config(epochs=3, lr=0.3, checkpoint_every_steps=3)  # a high rate: the last epoch is not the best one
    reference = _fit(RegressionTask(), cfg, accelerator)
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _fit(_StopsAt(23), cfg, accelerator, folder)  # in the third epoch, after a worse second one
    state = json.loads((folder / (folder / POINTER).read_text().strip() / "state.json").read_text())
    flip_bytes(folder / state["best"] / "model.safetensors")
    capsys.readouterr()
    resumed = _fit(RegressionTask(), cfg, accelerator, folder)
    err = capsys.readouterr().err
    assert state["best"] in err and (tmp_path / "ckpt.rejected" / state["best"]).is_dir()
    assert resumed[1].resumed_from_step is None or resumed[1].resumed_from_step < state["loop"]["step"]
    _same_run(reference, resumed)


def test_only_the_latest_the_one_before_and_their_best_are_kept(tmp_path, accelerator):
    folder = tmp_path / "ckpt"
    (folder / ".tmp-step-00000001-dead").mkdir(parents=True)  # left by a kill during a write
    (folder / ".LATEST.x1y2.tmp").write_text("step-")  # a pointer update torn by a kill
    _fit(RegressionTask(), config(epochs=3, lr=0.3, checkpoint_every_steps=1), accelerator, folder)
    entries = sorted(p.name for p in folder.iterdir())
    latest = (folder / POINTER).read_text().strip()
    steps = [name for name in entries if name.startswith("step-")]
    states = [json.loads((folder / name / "state.json").read_text()) for name in steps]
    assert steps[-1] == latest and len(steps) == 2 and states[-1]["loop"]["finished"]
    assert entries == sorted({POINTER, *steps, *(s["best"] for s in states)}) and entries[0] == POINTER
    assert states[-1]["best"] not in steps
    for name in entries[1:]:  # every folder vouches for its files with a manifest
        manifest = json.loads((folder / name / "manifest.json").read_text())
        files = sorted(p.name for p in (folder / name).iterdir() if p.name != "manifest.json")
        assert sorted(manifest["files"]) == files


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
        if len(written) == 13:  # three mid-epoch checkpoints of 3 files and a manifest, then the first epoch end dies
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
    assert len(list((tmp_path / "ckpt.rejected").iterdir())) == 1  # set aside, not resumed from or deleted
    fresh = Regressor(hidden=8)
    fit(fresh, RegressionTask(), cfg, accelerator=accelerator, seed=0, modalities=())
    assert all(torch.equal(a, b) for a, b in zip(params(model), params(fresh)))
    assert not all(torch.equal(a, b) for a, b in zip(params(model), before))
