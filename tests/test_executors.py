"""Executors: Ray tasks and submitit jobs write the same records into one folder as the in-process loop."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

SMALL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
         "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def _run(results, *extra):
    return main(["run", "--task", "vqa", "--baseline", "text-bert", "--seeds", "0,1", "--max-steps", "2",
                 "--results-dir", str(results), "--quiet", *TINY_DATA, *SMALL, *extra])


def _records(results):
    folder = results / "vqa" / "shapes" / "text-bert"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("seed-*.json")) if "predictions" not in p.name}


@pytest.fixture(scope="module")
def local_records(tmp_path_factory, cache_dir):
    """The reference: both runs in this process."""
    import os

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("local")
    assert _run(results) == 0
    return _records(results)


def _assert_same_runs(records, reference):
    assert sorted(records) == ["seed-0.json", "seed-1.json"]
    for name, record in records.items():
        ref = reference[name]
        # a job re-enters the same code path: same config hash and, on CPU with the same seed, the same numbers
        assert record["config_hash"] == ref["config_hash"]
        assert record["seed"] == ref["seed"]
        assert record["test"]["metrics"] == pytest.approx(ref["test"]["metrics"], abs=1e-9)
        losses = [entry["train_loss"] for entry in record["training"]["history"]]
        assert losses and losses == pytest.approx([e["train_loss"] for e in ref["training"]["history"]], rel=1e-6)
        assert record["data"]["sizes"] == ref["data"]["sizes"]
    # the two seeds really are two different runs
    assert records["seed-0.json"]["training"]["history"] != records["seed-1.json"]["training"]["history"]


def test_ray_round_trip(tmp_path, local_records, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert _run(tmp_path, "--executor", "ray", "--cpus-per-run", "1") == 0
        _assert_same_runs(_records(tmp_path), local_records)
        # a second submission finds both records done: every job is skipped, nothing is rewritten
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("seed-?.json")}
        assert _run(tmp_path, "--executor", "ray") == 0
        assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("seed-?.json")} == before
    finally:
        ray.shutdown()
    assert "text-bert" in capsys.readouterr().out  # the parent printed the table from the records


def test_submitit_local_round_trip(tmp_path, local_records):
    pytest.importorskip("submitit")
    assert _run(tmp_path, "--executor", "slurm", "--set", "executor.cluster=local", "--set", "executor.time=10") == 0
    _assert_same_runs(_records(tmp_path), local_records)
    logs = list((tmp_path / ".submitit").rglob("*_result.pkl"))
    assert len(logs) == 2  # two jobs, one per (baseline, seed)


def test_executor_settings_are_checked(tmp_path, capsys):
    assert _run(tmp_path, "--executor", "dask") == 2
    assert "--executor 'dask'" in capsys.readouterr().err
    assert _run(tmp_path, "--cpus-per-run", "2") == 2  # the local executor reserves nothing
    assert "applies to --executor ray or slurm" in capsys.readouterr().err
    assert _run(tmp_path, "--executor", "ray", "--set", "executor.partiton=gpu") == 2
    err = capsys.readouterr().err
    assert "unknown executor setting 'partiton'" in err and "partition" in err.split("partiton", 1)[1]
    assert _run(tmp_path, "--executor", "ray", "--set", "executor.partition=gpu") == 2
    assert not list(tmp_path.rglob("seed-?.json"))
