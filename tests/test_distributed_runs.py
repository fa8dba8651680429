"""`vlbench run` under torchrun with two gloo processes: the default epoch path, resume, and failures on one process.

Every epoch validates, keeps the best checkpoint and may stop early; a run killed in its second epoch
resumes to the uninterrupted run's record; one writer (the main process) means no stray files; a
failure on one process ends the run on both with one `error:` line, never a hang. The plugins below
plant the kill and the failures from inside the worker processes (``--plugin`` is loaded by each).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.conftest import TINY_DATA
from tests.process_helpers import torchrun
from tests.test_resume_process import built_cache  # noqa: F401  (fixture: the tiny dataset, built once)

SMALL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
         "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
BASELINES = ["text-bert", "vilt"]
EPOCHS = 3
ARGS = ["run", "--task", "vqa", "--baseline", "text-bert", "--baseline", "vilt", "--batch-size", "8", "--quiet",
        "--epochs", str(EPOCHS), "--checkpoint-every-steps", "2", "--set", "training.patience=1", *TINY_DATA, *SMALL]
TIMEOUT = 420  # seconds: far beyond a healthy sweep here; a hang fails the test instead of stalling the suite
FAILURE_TIMEOUT = 240  # a failure ends the run within seconds of training's start

_LOSS_HOOK = '''
import os
from vlbench.tasks.vqa import VQATask

_original, _calls = VQATask.loss, [0]


def _loss(self, outputs, batch):
    if outputs.requires_grad:
        _calls[0] += 1
        {action}
    return _original(self, outputs, batch)


VQATask.loss = _loss
'''
# both processes die at the same training step, as a kill of the whole job would leave them
KILL_BOTH = _LOSS_HOOK.format(action="if _calls[0] == {step}:\n            os._exit(137)")
# process 1 alone fails inside a training step, while process 0 waits for its gradients
FAIL_ON_ONE = _LOSS_HOOK.format(action='if _calls[0] == 3 and os.environ["RANK"] == "1":\n'
                                       '            raise RuntimeError("planted failure in a training step")')
# the main process cannot write the first checkpoint of the sweep (the first run's)
FAIL_FIRST_CHECKPOINT = '''
from vlbench.training.checkpoint import CheckpointStore

_original, _failed = CheckpointStore.save, []


def _save(self, *args, **kwargs):
    if not _failed:
        _failed.append(1)
        raise OSError(28, "No space left on device (planted)")
    return _original(self, *args, **kwargs)


CheckpointStore.save = _save
'''


def _plugin(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return ["--plugin", str(path)]


def _folder(results: Path, baseline: str) -> Path:
    return results / "vqa" / "shapes" / baseline


def _record(results: Path, baseline: str) -> dict:
    return json.loads((_folder(results, baseline) / "seed-0.json").read_text())


def _comparable(record: dict) -> dict:
    history = [{k: v for k, v in e.items() if k != "seconds"} for e in record["training"]["history"]]
    return {"history": history, "test": record["test"], "per_example": record["per_example"],
            "best": (record["training"]["best_epoch"], record["training"]["best_validation"]),
            "steps": record["training"]["steps"], "stopped_early": record["training"]["stopped_early"],
            "config_hash": record["config_hash"]}


def _error_lines(done) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]


def test_two_processes_two_baselines_validate_keep_the_best_stop_early_and_resume(tmp_path, built_cache):  # noqa: F811
    reference = tmp_path / "reference"
    done = torchrun([*ARGS, "--results-dir", str(reference)], built_cache, timeout=TIMEOUT)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert _error_lines(done) == [] and done.stdout.count("vqa on shapes") == 1  # one process prints the table
    for baseline in BASELINES:
        record = _record(reference, baseline)
        training = record["training"]
        assert record["status"] == "ok" and record["distributed"]["world_size"] == 2
        assert record["distributed"]["global_batch_size"] == 16
        history = training["history"]
        steps_per_epoch = math.ceil(record["data"]["sizes"]["train"] / 16)
        assert [e["steps"] for e in history] == [steps_per_epoch * (i + 1) for i in range(len(history))]
        assert training["steps"] == history[-1]["steps"]
        scores = [e["validation"] for e in history]  # every epoch validated
        best = scores.index(max(scores))
        assert training["best_epoch"] == best + 1 and training["best_validation"] == scores[best]
        # patience 1: the run stops after the first epoch that does not improve, unless that is the last
        first_worse = next((i for i in range(1, len(scores)) if scores[i] <= max(scores[:i])), None)
        expected_epochs = EPOCHS if first_worse is None or first_worse == EPOCHS - 1 else first_worse + 1
        assert len(history) == expected_epochs and training["stopped_early"] == (expected_epochs < EPOCHS)
        # the main process wrote everything once; the checkpoints went with the record
        assert sorted(p.name for p in _folder(reference, baseline).iterdir()) == \
            ["seed-0.json", "seed-0.lock", "seed-0.predictions.json"]
        predictions = json.loads((_folder(reference, baseline) / "seed-0.predictions.json").read_text())
        assert sorted(str(p["question_id"]) for p in predictions) == sorted(record["per_example"]["test"])
        assert len(predictions) == record["data"]["sizes"]["test"]

    # the same sweep, killed (both processes) in text-bert's second epoch, then run again
    killed = tmp_path / "killed"
    step = math.ceil(_record(reference, "text-bert")["data"]["sizes"]["train"] / 16) + 5
    done = torchrun([*ARGS, "--results-dir", str(killed), *_plugin(tmp_path, "kill", KILL_BOTH.format(step=step))],
                    built_cache, timeout=TIMEOUT)
    assert done.returncode not in (0, None), done.stderr[-3000:]
    ckpt = _folder(killed, "text-bert") / "seed-0.ckpt"
    saved = json.loads((ckpt / (ckpt / "LATEST").read_text().strip() / "state.json").read_text())["loop"]
    assert saved["epoch"] == 2 and not saved["finished"] and not (_folder(killed, "text-bert") / "seed-0.json").exists()
    done = torchrun([*ARGS, "--results-dir", str(killed)], built_cache, timeout=TIMEOUT)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    resumed = _record(killed, "text-bert")
    assert resumed["training"]["resumed_from_step"] == saved["step"]
    for baseline in BASELINES:
        assert _comparable(_record(killed, baseline)) == _comparable(_record(reference, baseline)), baseline


def test_a_failure_inside_a_training_step_of_one_process_ends_both_with_one_error_line(
        tmp_path, built_cache):  # noqa: F811
    done = torchrun([*ARGS, "--epochs", "1", "--results-dir", str(tmp_path),
                     *_plugin(tmp_path, "fail", FAIL_ON_ONE)], built_cache, timeout=FAILURE_TIMEOUT)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])  # None: it hung until the timeout
    errors = _error_lines(done)
    assert len(errors) == 1, done.stderr[-3000:]
    assert "text-bert seed 0 failed on process 1 of 2" in errors[0] and "planted failure" in errors[0]
    assert not (_folder(tmp_path, "text-bert") / "seed-0.json").exists()  # a rerun resumes it


def test_a_failed_checkpoint_write_fails_that_run_on_both_and_the_sweep_goes_on(tmp_path, built_cache):  # noqa: F811
    done = torchrun([*ARGS, "--epochs", "1", "--results-dir", str(tmp_path),
                     *_plugin(tmp_path, "disk", FAIL_FIRST_CHECKPOINT)], built_cache, timeout=FAILURE_TIMEOUT)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    errors = _error_lines(done)
    assert len(errors) == 1 and "text-bert seed 0 failed: OSError" in errors[0], done.stderr[-3000:]
    assert _record(tmp_path, "text-bert")["status"] == "failed"
    assert "No space left on device" in _record(tmp_path, "text-bert")["failure"]["reason"]
    assert _record(tmp_path, "vilt")["status"] == "ok"  # both processes went on to the next run, in step


def test_bad_input_under_the_launcher_is_one_error_line(tmp_path, built_cache):  # noqa: F811
    # --epochs 0 is refused before the processes form their group, fp16 on a CPU after they joined it
    for bad, message in ((["--epochs", "0"], "epochs=0"), (["--precision", "fp16"], "needs a CUDA GPU")):
        done = torchrun([*ARGS, "--results-dir", str(tmp_path), *bad], built_cache, timeout=FAILURE_TIMEOUT)
        assert done.returncode not in (0, None), done.stderr[-3000:]
        errors = _error_lines(done)
        assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    assert not list(tmp_path.rglob("seed-*"))
