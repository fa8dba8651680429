"""Exit codes of `vlbench run` told by real processes, and failed runs recorded while the sweep goes on."""

from __future__ import annotations

import json
import signal
import tempfile
import time

import pytest
import torch

from vlbench.runner import sweep
from tests.conftest import TINY_DATA
from tests.process_helpers import SMALL_MODEL, TINY_RUN, run, start
from vlbench.cli.main import main
from vlbench.failures import OOM_HINT

IDENTITY = {"schema", "task", "dataset", "baseline", "seed", "config_hash", "config", "versions", "git_commit",
            "device", "created"}


def _record(results, baseline, seed=0):
    return json.loads((results / "vqa" / "shapes" / baseline / f"seed-{seed}.json").read_text())


def _prior_accuracy() -> float:
    """The question-type prior's test accuracy: its answers worked out here from the data the runs use (TINY_DATA),
    scored with the official VQA accuracy (normalised answers, leave-one-annotator-out)."""
    from collections import Counter, defaultdict

    from vlbench.data.shapes import build_shapes
    from vlbench.data.vqa_format import annotations_list
    from vlbench.metrics.vqa import vqa_evaluate

    with tempfile.TemporaryDirectory() as cache:
        vqa = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache, quiet=True).tables["vqa"]
        by_type: dict[str, Counter] = defaultdict(Counter)
        for row in vqa["train"]:
            by_type[row["question_type"]][row["multiple_choice_answer"]] += 1
        prior = {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in by_type.items()}
        guesses = [{"question_id": row["question_id"], "answer": prior[row["question_type"]]} for row in vqa["test"]]
        return vqa_evaluate(guesses, annotations_list(vqa["test"]))["overall"]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_nan_loss_in_a_two_baseline_sweep_exits_1_with_one_failed_record(tmp_path, cache_dir):
    # weight decay far above 1/lr makes AdamW multiply every weight by about -1e9 per step: the loss overflows
    args = [*TINY_RUN, "--baseline", "prior", "--baseline", "vilt", "--results-dir", str(tmp_path), "--max-steps", "4",
            "--precision", "fp32", "--lr", "1", "--set", "training.weight_decay=1e9"]
    proc = run(args, cache_dir)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "vilt seed 0 failed" in errors[0] and "TrainingError" in errors[0], proc.stderr
    good, failed = _record(tmp_path, "prior"), _record(tmp_path, "vilt")
    assert good["status"] == "ok" and good["test"]["metrics"]["accuracy"] == pytest.approx(_prior_accuracy(), abs=0.005)
    assert failed["status"] == "failed" and "test" not in failed and IDENTITY <= set(failed)
    failure = failed["failure"]
    assert set(failure) == {"type", "reason", "step", "last_finite_loss", "hint"}
    assert failure["type"] == "TrainingError" and any(word in failure["reason"].lower() for word in ("nan", "inf"))
    assert isinstance(failure["step"], int) and 1 <= failure["step"] <= 4  # where the trainer stopped
    assert failure["last_finite_loss"] is None or failure["last_finite_loss"] > 0
    assert not list((tmp_path / "vqa" / "shapes" / "vilt").glob("*.predictions*"))


def test_ctrl_c_exits_130_and_keeps_finished_records(tmp_path, cache_dir):
    args = [*TINY_RUN, "--baseline", "prior", "--baseline", "vilt", "--results-dir", str(tmp_path),
            "--epochs", "100000", "--set", "training.patience=0"]
    child = start(args, cache_dir)
    prior = tmp_path / "vqa" / "shapes" / "prior" / "seed-0.json"
    deadline = time.monotonic() + 180
    while not prior.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prior.exists(), child.communicate(timeout=30)
    time.sleep(1.0)  # now vilt is training
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted; finished results are kept" in err and "Traceback" not in err
    assert json.loads(prior.read_text())["status"] == "ok"
    assert not (tmp_path / "vqa" / "shapes" / "vilt" / "seed-0.json").exists()


def _tiny(results, *extra):
    return main(["run", "--task", "vqa", "--results-dir", str(results), "--max-steps", "2", "--quiet",
                 *TINY_DATA, *extra])


@pytest.mark.parametrize("error, kind, hint", [
    (ValueError("bad value in the model"), "ValueError", None),
    (RuntimeError("something broke"), "RuntimeError", None),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "OutOfMemoryError", OOM_HINT),
])
def test_any_exception_in_one_run_is_a_failed_record_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys,
                                                                            error, kind, hint):
    real = sweep.run_one

    def flaky(config, seed, *args, **kwargs):
        if config.baseline.name == "prior" and seed == 0:
            raise error
        return real(config, seed, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_one", flaky)
    assert _tiny(tmp_path, "--baseline", "prior", "--seeds", "0,1") == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and kind in errors[0]
    failed = _record(tmp_path, "prior", 0)
    assert failed["status"] == "failed" and failed["failure"]["type"] == kind and failed["failure"]["hint"] == hint
    assert failed["failure"]["reason"] == str(error)
    assert _record(tmp_path, "prior", 1)["status"] == "ok"
    # a failed record is not "done": the next invocation runs it again and skips the finished one
    monkeypatch.setattr(sweep, "run_one", real)
    finished = (tmp_path / "vqa" / "shapes" / "prior" / "seed-1.json").read_text()
    assert _tiny(tmp_path, "--baseline", "prior", "--seeds", "0,1") == 0
    assert _record(tmp_path, "prior", 0)["status"] == "ok"
    assert (tmp_path / "vqa" / "shapes" / "prior" / "seed-1.json").read_text() == finished


def test_a_failure_never_replaces_a_finished_record(tmp_path, monkeypatch, capsys):
    assert _tiny(tmp_path, "--baseline", "prior") == 0
    finished = (tmp_path / "vqa" / "shapes" / "prior" / "seed-0.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sweep, "run_one", broken)
    assert _tiny(tmp_path, "--baseline", "prior", "--force") == 1
    assert "finished record" in capsys.readouterr().err
    assert (tmp_path / "vqa" / "shapes" / "prior" / "seed-0.json").read_text() == finished
