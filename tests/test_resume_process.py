"""Resume with real processes: SIGKILL `vlbench run` while it trains, run it again, get the same record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.tasks.vqa import VQATask
from vlbench.training.checkpoint import POINTER

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "--task", "vqa", "--baseline", "vilt", "--epochs", "2", "--batch-size", "8", "--quiet",
        "--checkpoint-every-steps", "3", "--set", "training.patience=0", *TINY_DATA,
        "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
        "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
RECORD = Path("vqa", "shapes", "vilt", "seed-0.json")
CKPT = Path("vqa", "shapes", "vilt", "seed-0.ckpt")


def _start(results: Path, cache_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "VLBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vlbench", *ARGS, "--results-dir", str(results), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpoint_state(folder: Path) -> dict | None:
    try:
        name = (folder / POINTER).read_text().strip()
        return json.loads((folder / name / "state.json").read_text())["loop"]
    except (OSError, ValueError):
        return None


def _comparable(record: dict) -> dict:
    history = [{k: v for k, v in e.items() if k != "seconds"} for e in record["training"]["history"]]
    return {"history": history, "test": record["test"], "per_example": record["per_example"],
            "best_epoch": record["training"]["best_epoch"], "steps": record["training"]["steps"],
            "config_hash": record["config_hash"]}


@pytest.fixture(scope="module")
def built_cache(cache_dir):
    """Build the tiny dataset once in this process, so that the subprocesses only read it."""
    from vlbench.runner import load_dataset
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    overrides = [a for a in TINY_DATA if a != "--set"]
    config = resolve_run_config(load_task_spec("vqa"), load_baseline_spec("vilt"), overrides=overrides)
    load_dataset(config.dataset, config.task.data, cache_dir, quiet=True)
    return cache_dir


def test_sigkill_during_training_then_rerun_gives_the_uninterrupted_record(tmp_path, built_cache):
    # the reference runs alongside, with DataLoader workers: neither killing nor workers may change a number
    reference = _start(tmp_path / "reference", built_cache, "--num-workers", "2")
    victim = _start(tmp_path / "killed", built_cache)
    folder = tmp_path / "killed" / CKPT
    state = None
    while victim.poll() is None:
        state = _checkpoint_state(folder)
        if state is not None and state["step"] >= 6:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {victim.stdout.read()}"
    assert reference.wait() == 0, reference.stdout.read()
    assert not (tmp_path / "killed" / RECORD).exists()
    saved = _checkpoint_state(folder)  # a later checkpoint may have landed before the kill did
    assert saved is not None and not saved["finished"] and saved["step"] >= state["step"]

    rerun = _start(tmp_path / "killed", built_cache)
    assert rerun.wait() == 0, rerun.stdout.read()
    resumed = json.loads((tmp_path / "killed" / RECORD).read_text())
    expected = json.loads((tmp_path / "reference" / RECORD).read_text())
    assert _comparable(resumed) == _comparable(expected)
    predictions = [(p / RECORD.parent / "seed-0.predictions.json").read_text() for p in (tmp_path / "killed",
                                                                                     tmp_path / "reference")]
    assert predictions[0] == predictions[1]
    assert resumed["training"]["resumed_from_step"] == saved["step"]
    assert resumed["training"]["steps_this_run"] == expected["training"]["steps"] - saved["step"]
    assert expected["training"]["resumed_from_step"] is None
    assert not folder.exists()  # deleted once the record was written


def test_killed_during_evaluation_the_rerun_does_not_train_again(tmp_path, built_cache, monkeypatch):
    args = [*ARGS, "--epochs", "1", "--results-dir"]
    assert main([*args, str(tmp_path / "reference")]) == 0
    original = VQATask.evaluate

    def dies_on_test(self, model, split, *rest):
        if split == "test":
            raise KeyboardInterrupt  # stands for a kill between the last checkpoint and the record
        return original(self, model, split, *rest)

    monkeypatch.setattr(VQATask, "evaluate", dies_on_test)
    main([*args, str(tmp_path / "killed")])  # its exit code is the command line's business, not this test's
    monkeypatch.undo()
    assert not (tmp_path / "killed" / RECORD).exists()
    state = _checkpoint_state(tmp_path / "killed" / CKPT)
    assert state is not None and state["finished"]

    assert main([*args, str(tmp_path / "killed")]) == 0
    resumed = json.loads((tmp_path / "killed" / RECORD).read_text())
    expected = json.loads((tmp_path / "reference" / RECORD).read_text())
    assert _comparable(resumed) == _comparable(expected)
    assert resumed["training"]["steps_this_run"] == 0
    assert resumed["training"]["resumed_from_step"] == expected["training"]["steps"]
