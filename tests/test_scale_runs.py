"""Runs spread over engines: Ray tasks, submitit jobs and two data-parallel processes against one process.

One reference (both seeds in this process) serves every comparison: an executor re-enters the same
code path for each (baseline, seed), so its records must equal the reference's; two processes training
on halves of the same global batch must see the same test set and land within a tolerance of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA
from tests.process_helpers import free_port
from vlbench.cli.main import main

SMALL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
         "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64",
         "--set", "baseline.config.dropout=0"]  # no dropout: two processes draw other masks than one
COMMON = ["--task", "vqa", "--baseline", "vilt", "--max-steps", "3", "--precision", "fp32", "--device", "cpu",
          "--quiet", *TINY_DATA, *SMALL]


def _run(results, *extra):
    return main(["run", *COMMON, "--seeds", "0,1", "--batch-size", "8", "--results-dir", str(results), *extra])


def _records(results: Path) -> dict[str, dict]:
    folder = results / "vqa" / "shapes" / "vilt"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("seed-?.json"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """Both seeds in this process, one after the other."""
    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("local")
    assert _run(results) == 0
    return _records(results)


def _assert_same_runs(records, reference):
    assert sorted(records) == ["seed-0.json", "seed-1.json"]
    for name, record in records.items():
        ref = reference[name]
        # the same code path: same config hash and, on CPU with the same seed, the same numbers
        assert record["config_hash"] == ref["config_hash"] and record["seed"] == ref["seed"]
        assert record["test"]["metrics"] == ref["test"]["metrics"]
        assert record["per_example"] == ref["per_example"]
        losses = [entry["train_loss"] for entry in record["training"]["history"]]
        assert losses == pytest.approx([e["train_loss"] for e in ref["training"]["history"]], rel=1e-6)
    # the two seeds really are two different runs
    assert records["seed-0.json"]["training"]["history"] != records["seed-1.json"]["training"]["history"]


@pytest.mark.slow
def test_ray_round_trip(tmp_path, reference, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert _run(tmp_path, "--executor", "ray", "--cpus-per-run", "1") == 0
        _assert_same_runs(_records(tmp_path), reference)
        assert "vilt" in capsys.readouterr().out  # the parent printed the table from the records
        # submitted again, every job finds its record done: nothing is rewritten
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("seed-?.json")}
        assert _run(tmp_path, "--executor", "ray") == 0
        assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("seed-?.json")} == before
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_submitit_local_round_trip(tmp_path, reference):
    pytest.importorskip("submitit")
    assert _run(tmp_path, "--executor", "slurm", "--set", "executor.cluster=local", "--set", "executor.time=10") == 0
    _assert_same_runs(_records(tmp_path), reference)
    assert len(list((tmp_path / ".submitit").rglob("*_result.pkl"))) == 2  # one job per (baseline, seed)


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


@pytest.mark.slow
@pytest.mark.parametrize("data", ["--data-on-device", "--no-data-on-device"])
def test_two_processes_match_one_on_the_same_global_batch(tmp_path, reference, cache_dir, data):
    """torchrun (what ``accelerate launch --multi_gpu`` runs) with gloo on CPU: 2 x 4 examples against 1 x 8.

    Either data path: each process's shard of positions gathered from its split on the device, or its
    shard of collated batches.
    """
    env = {**os.environ, "VLBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "vlbench", "run", *COMMON, "--seeds", "0",
               "--batch-size", "4", "--results-dir", str(tmp_path), data]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("vqa on shapes") == 1  # one process prints the table
    files = sorted(p.name for p in (tmp_path / "vqa" / "shapes" / "vilt").iterdir() if p.suffix != ".lock")
    assert files == ["seed-0.json", "seed-0.predictions.json"]  # one writer, no checkpoints or stray files left
    record, ref = _records(tmp_path)["seed-0.json"], reference["seed-0.json"]
    assert record["distributed"] == {"world_size": 2, "per_process_batch_size": 4, "grad_accum_steps": 1,
                                     "global_batch_size": 8}
    assert record["training"]["data_on_device"] is (data == "--data-on-device")
    assert ref["distributed"]["world_size"] == 1 and ref["distributed"]["global_batch_size"] == 8
    assert record["config_hash"] != ref["config_hash"]  # never mistaken for (or skipped as) the one-process run
    # exactly the same test set: every question once, none dropped or duplicated by the sharding
    assert record["data"]["sizes"] == ref["data"]["sizes"]
    assert sorted(record["per_example"]["test"]) == sorted(ref["per_example"]["test"])
    predictions = json.loads((tmp_path / "vqa" / "shapes" / "vilt" / "seed-0.predictions.json").read_text())
    assert [p["question_id"] for p in predictions] == [int(q) for q in ref["per_example"]["test"]]
    # training on halves of the same global batches, averaged by DDP: the same steps and nearly the same losses
    assert record["training"]["steps"] == ref["training"]["steps"] == 3
    losses = [e["train_loss"] for e in record["training"]["history"]]
    assert losses == pytest.approx([e["train_loss"] for e in ref["training"]["history"]], rel=1e-3)
    n_test = ref["data"]["sizes"]["test"]
    for name, value in ref["test"]["metrics"].items():
        assert abs(record["test"]["metrics"][name] - value) <= 2 * 100 / n_test + 1e-9, name  # two answers at most
