"""The example third-party plugin (examples/vlbench-bowimg) installs with pip, lists and runs; and loads as --plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vlbench-bowimg"
RUN = ["run", "--task", "vqa", "--baseline", "bowimg", "--max-steps", "3", "--batch-size", "16", "--quiet", *TINY_DATA]


def _vlbench(args, env, cwd):
    # a fresh interpreter, so that the plugin's registrations never leak into this test session
    return subprocess.run([sys.executable, "-m", "vlbench", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def env(cache_dir, tmp_path):
    environment = dict(os.environ, VLBENCH_CACHE=str(cache_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    environment.pop("PYTHONPATH", None)
    return environment


def test_pip_installed_plugin_lists_its_baseline_and_runs(env, tmp_path):
    target = tmp_path / "site"
    source = tmp_path / "src"
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # offline and fast: no dependencies, no isolated build environment (setuptools comes from the venv)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "vlbench_bowimg" / "baselines" / "bowimg.yaml").is_file()  # the spec ships as package data
    env["PYTHONPATH"] = str(target)
    listed = _vlbench(["list", "baselines", "--format", "json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    bowimg = next(item for item in json.loads(listed.stdout) if item["name"] == "bowimg")
    assert bowimg["tasks"] == ["vqa"] and "BOWIMG" in bowimg["description"]
    ran = _vlbench([*RUN, "--results-dir", str(tmp_path / "runs")], env, tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    record = json.loads((tmp_path / "runs" / "vqa" / "shapes" / "bowimg" / "seed-0.json").read_text())
    assert record["training"]["steps"] == 3
    assert record["parameters"]["trainable"] == record["parameters"]["total"] > 0
    # the plugin model's answers were scored on every test question, and the record's number is their mean
    per_question = record["per_example"]["test"]
    assert len(per_question) == record["data"]["sizes"]["test"] > 0
    mean = 100 * sum(per_question.values()) / len(per_question)
    assert mean == pytest.approx(record["test"]["metrics"]["accuracy"], abs=0.005)
    predictions = json.loads((tmp_path / "runs" / "vqa" / "shapes" / "bowimg" / record["predictions_file"]).read_text())
    assert sorted(str(p["question_id"]) for p in predictions) == sorted(per_question)


def test_plugin_file_works_without_installing(env, tmp_path):
    module = EXAMPLE / "vlbench_bowimg" / "model.py"
    ran = _vlbench([*RUN, "--results-dir", str(tmp_path / "runs"), "--plugin", str(module)], env, tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "runs" / "vqa" / "shapes" / "bowimg" / "seed-0.json").is_file()


def test_without_the_plugin_its_baseline_is_unknown(tmp_path, capsys):
    from vlbench.cli.main import main

    # the plugin ran in child processes only: nothing leaked into this one
    assert main([*RUN, "--results-dir", str(tmp_path)]) == 2
    assert "Unknown baseline 'bowimg'" in capsys.readouterr().err
