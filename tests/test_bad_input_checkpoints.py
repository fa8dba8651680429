"""Bad checkpoints and leftovers of killed writes, in a real run's folder: each is set aside or removed, never trusted.

A run of `vlbench run` is interrupted after a few checkpoints; each case damages its checkpoint folder
the way a disk or a person could (64 flipped bytes that keep the length, a missing file, an edited
`state.json`) and runs the same command again. The rerun must exit 0 with one `warning:` line per
checkpoint it set aside, resume from the newest checkpoint that passes its check (or start afresh),
and write exactly the record and predictions of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_checkpoint import flip_bytes
from tests.test_resume_process import ARGS, CKPT, RECORD, _comparable
from vlbench.cli.main import main
from vlbench.tasks.vqa import VQATask
from vlbench.training.checkpoint import POINTER

STOP_AT = 35  # training forward passes: in the second epoch (27 steps each), after checkpoints at 30 and 33


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """The uninterrupted run's record and predictions."""
    import os

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--results-dir", str(results)]) == 0
    return json.loads((results / RECORD).read_text()), (results / RECORD.parent / "seed-0.predictions.json").read_text()


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, cache_dir):
    """A results folder whose run was stopped (as by a kill) in its second epoch: checkpoints, no record."""
    results = tmp_path_factory.mktemp("interrupted")
    original, calls = VQATask.loss, []

    def stops(self, outputs, batch):
        if outputs.requires_grad:
            calls.append(1)
            if len(calls) == STOP_AT:
                raise KeyboardInterrupt  # not caught by the run: it ends the command as a kill would
        return original(self, outputs, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VQATask, "loss", stops)
        assert main([*ARGS, "--results-dir", str(results)]) == 130
    assert not (results / RECORD).exists()
    return results


def _state(folder: Path) -> dict:
    return json.loads((folder / "state.json").read_text())


def _edit_state(folder: Path, change) -> None:
    state = _state(folder)
    change(state)
    (folder / "state.json").write_text(json.dumps(state))


def _latest(ckpt: Path) -> Path:
    return ckpt / (ckpt / POINTER).read_text().strip()


def _previous(ckpt: Path) -> Path:
    return sorted(p for p in ckpt.iterdir() if p.name.startswith("step-") and p != _latest(ckpt))[-1]


def _best(ckpt: Path) -> Path:
    return ckpt / _state(_latest(ckpt))["best"]


# case: (what is damaged, the damage, the folders set aside, where the rerun resumes: "previous" or None)
CASES = {
    "model.safetensors flipped": (_latest, lambda f: flip_bytes(f / "model.safetensors"), 1, "previous"),
    "training.pt flipped": (_latest, lambda f: flip_bytes(f / "training.pt"), 1, "previous"),
    "training.pt missing": (_latest, lambda f: (f / "training.pt").unlink(), 1, "previous"),
    "state.json unknown key": (_latest, lambda f: _edit_state(f, lambda s: s["loop"].update(resume_here=True)), 1,
                               "previous"),
    "state.json skip_batches": (_latest, lambda f: _edit_state(f, lambda s: s["loop"].update(skip_batches=0)), 1,
                                "previous"),
    "manifest.json removed": (_latest, lambda f: (f / "manifest.json").unlink(), 1, "previous"),
    # both step checkpoints need the best weights: all three go, and the run starts afresh
    "best weights flipped": (_best, lambda f: flip_bytes(f / "model.safetensors"), 3, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_checkpoint_is_set_aside_and_the_rerun_gives_the_uninterrupted_record(
        reference, interrupted, tmp_path, capsys, case):
    results = tmp_path / "results"
    shutil.copytree(interrupted, results)
    ckpt = results / CKPT
    which, damage, set_aside, resumes = CASES[case]
    previous_step = _state(_previous(ckpt))["loop"]["step"]
    damage(which(ckpt))
    capsys.readouterr()
    assert main([*ARGS, "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == set_aside and "error" not in err, err
    assert len(list((results / CKPT).with_name(CKPT.name + ".rejected").iterdir())) == set_aside  # kept, not deleted
    record = json.loads((results / RECORD).read_text())
    assert record["status"] == "ok"
    assert record["training"]["resumed_from_step"] == (previous_step if resumes == "previous" else None)
    assert _comparable(record) == _comparable(reference[0])
    assert (results / RECORD.parent / "seed-0.predictions.json").read_text() == reference[1]


def test_temp_files_of_killed_writes_are_removed_by_the_next_run(reference, interrupted, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(interrupted, results)
    folder = results / RECORD.parent
    # what a record or predictions write killed between its temp file and its rename leaves behind
    leftovers = [folder / ".seed-0.json.u7x2k1.tmp", folder / ".seed-0.predictions.json.p0q9z3.tmp"]
    for path in leftovers:
        path.write_text('{"half": ')
    other = folder / ".seed-1.json.a1b2c3.tmp"  # another run's: not this run's to judge
    other.write_text("{")
    assert main([*ARGS, "--results-dir", str(results)]) == 0
    assert "removed 2 temporary file(s)" in capsys.readouterr().err
    assert not any(path.exists() for path in leftovers) and other.exists()
    assert _comparable(json.loads((results / RECORD).read_text())) == _comparable(reference[0])
