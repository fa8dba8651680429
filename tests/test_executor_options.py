"""Executor settings and the Slurm path's resubmission of failed jobs (no cluster needed)."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

from tests.conftest import TINY_DATA
from vlbench.errors import VLBenchError
from vlbench.executors.jobs import JobReport, plan_jobs, record_lost
from vlbench.executors.options import make_options, split_executor_overrides
from vlbench.executors.slurm_executor import _wait, submitit_parameters


def test_set_executor_keys_are_split_from_spec_overrides():
    rest, settings = split_executor_overrides(["task.data.x=1", "executor.partition=gpu", "executor.time=30"])
    assert rest == ["task.data.x=1"] and settings == {"partition": "gpu", "time": 30}
    options = make_options("slurm", settings, cpus_per_run=4, gpus_per_run=None)
    assert (options.partition, options.time, options.cpus_per_run, options.gpus_per_run) == ("gpu", 30, 4.0, None)
    # a flag wins over the same --set key
    assert make_options("ray", {"cpus_per_run": 2}, cpus_per_run=3).cpus_per_run == 3.0


def test_submitit_parameters_name_slurm_settings_with_their_prefix():
    options = make_options("slurm", {"partition": "a100", "account": "lab", "mem_gb": 32, "time": 90},
                           cpus_per_run=8, gpus_per_run=1)
    params = submitit_parameters(options)
    assert params["slurm_partition"] == "a100" and params["slurm_account"] == "lab"
    assert (params["cpus_per_task"], params["gpus_per_node"], params["timeout_min"], params["mem_gb"]) == (8, 1, 90, 32.0)
    with pytest.raises(VLBenchError, match="whole number"):
        submitit_parameters(make_options("slurm", {}, gpus_per_run=0.5))


class _Handle:
    def __init__(self, outcome, job_id):
        self.outcome, self.job_id = outcome, job_id

    def result(self):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class _Executor:
    """Hands out the queued outcomes, one per submission."""

    def __init__(self, outcomes):
        self.outcomes, self.submitted = list(outcomes), 0

    def submit(self, fn, job):
        self.submitted += 1
        return _Handle(self.outcomes.pop(0), f"retry-{self.submitted}")


class _Job:
    label = "vilt seed 3"
    path = config = None  # no record to write for this stand-in

    class request:  # noqa: N801  (the attributes a RunRequest has that the report needs)
        baselines = [type("Spec", (), {"name": "vilt"})()]
        seeds = [3]


def test_a_failed_job_is_resubmitted_until_it_succeeds_or_runs_out_of_retries():
    lines: list[str] = []
    ok = JobReport("vilt seed 3", written=["x.json"], messages=["vilt seed 3: test accuracy = 50.00"])
    executor = _Executor([RuntimeError("node lost"), ok])
    report = _wait(executor, None, _Job(), _Handle(RuntimeError("preempted"), "1"), make_options("slurm", {}),
                   lines.append, lines.append)
    assert report is ok and executor.submitted == 2  # defaults: two retries; the second one succeeded
    assert any("resubmitting (1/2)" in line for line in lines) and lines[-1].startswith("vilt seed 3: test")

    lines.clear()
    executor = _Executor([RuntimeError("again")])
    options = make_options("slurm", {"max_retries": 1})
    report = _wait(executor, None, _Job(), _Handle(RuntimeError("first"), "7"), options, lines.append, lines.append)
    assert executor.submitted == 1 and report.written == []
    assert report.failed == [("vilt", 3, "job retry-1 failed after 2 attempt(s): again")]


def test_a_lost_job_leaves_a_failed_record_that_its_rerun_replaces(tmp_path):
    from vlbench.runner import RunRequest, run_task
    from vlbench.specs import load_baseline_spec, load_task_spec

    request = RunRequest(task=load_task_spec("vqa"), baselines=[load_baseline_spec("prior")], results_dir=tmp_path,
                         seeds=[0], overrides=TINY_DATA[1::2], quiet=True)
    [job] = plan_jobs(request, echo=lambda line: None)
    line = record_lost(job, "the worker died 3 times", "ray")
    assert line.startswith("error: prior seed 0: the worker died 3 times -> ")
    failed = json.loads(Path(job.path).read_text())
    assert failed["status"] == "failed" and failed["failure"]["type"] == "JobLost" and "test" not in failed
    assert failed["config_hash"] == job.digest and failed["device"] == "ray job (lost)"
    # a job that is still alive holds the run's lock: its run is not declared lost over it
    from vlbench.locks import RunLock

    with RunLock(Path(job.path)):
        assert "holds its lock" in record_lost(job, "lost while alive", "ray")
    assert json.loads(Path(job.path).read_text()) == failed
    # the job's own run computes the same config hash, so rerunning it replaces the failed record
    outcome = run_task(job.request, echo=lambda line: None)
    assert outcome.written == [Path(job.path)]
    finished = json.loads(Path(job.path).read_text())
    assert finished["status"] == "ok" and finished["config_hash"] == job.digest
    # and a lost job never overwrites a finished record
    assert "the finished record" in record_lost(job, "lost again", "slurm")
    assert json.loads(Path(job.path).read_text())["status"] == "ok"
