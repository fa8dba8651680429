"""One job per (task, baseline, seed): what it carries, how a worker runs it, what it reports back.

A job is an ordinary ``RunRequest`` narrowed to one baseline and one seed, run by ``runner.run_task`` in
the worker, so it writes the same record (same config hash, same tokenizer, same resume) into the same
results folder as the in-process loop would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vlbench.errors import VLBenchError

__all__ = ["JobLost", "RunJob", "JobReport", "plan_jobs", "run_job", "merge_reports", "record_lost"]


class JobLost(Exception):
    """A job whose process died (pre-emption, lost node, killed) on every attempt it was given."""


@dataclass
class RunJob:
    """A picklable single-run request plus what the worker must load first, and the record it will write."""

    request: Any  # vlbench.runner.RunRequest with one baseline and one seed
    plugins: list[str] = field(default_factory=list)
    threads: Optional[int] = None
    config: Any = None  # the run's resolved RunConfig
    path: Optional[str] = None  # its record
    digest: Optional[str] = None  # its config hash, as the worker computes it

    @property
    def label(self) -> str:
        """``baseline seed N``, as the in-process loop names a run."""
        return f"{self.request.baselines[0].name} seed {self.request.seeds[0]}"


@dataclass
class JobReport:
    """What one job did (paths as strings so the report pickles across machines)."""

    label: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # progress lines, for the parent's echo
    notes: list[str] = field(default_factory=list)  # warnings and failures, for the parent's stderr

    def replay(self, echo: Callable[[str], None], warn: Callable[[str], None]) -> None:
        """Say in the parent what the job said in its worker."""
        for line in self.messages:
            echo(line)
        for line in self.notes:
            warn(line)


def plan_jobs(request: Any, plugins: Optional[list[str]] = None, threads: Optional[int] = None,
              echo: Callable[[str], None] = print) -> list[RunJob]:
    """Split a request into one job per (baseline, seed), after the shared work the jobs reuse.

    The parent resolves every config first (bad input fails here, before any submission), drops
    baselines whose optional package is missing, and builds the dataset cache once so that jobs only
    read it. Each job carries its record's path and config hash, for the failed record of a job that
    never comes back (the hash assumes the worker's device runs the precision this machine's would).
    """
    from vlbench.data.base import default_cache_dir
    from vlbench.data.loading import load_dataset
    from vlbench.plan import drop_unavailable, planned_runs, resolve_runs
    from vlbench.training.device import get_accelerator

    configs = drop_unavailable(resolve_runs(request), echo)
    cache_dir = Path(request.cache_dir).resolve() if request.cache_dir else default_cache_dir().resolve()
    dataset = load_dataset(configs[0].dataset, configs[0].task.data, cache_dir, request.quiet)
    device = get_accelerator(request.device).device
    results_dir = Path(request.results_dir).resolve()
    by_name = {spec.name: spec for spec in request.baselines}
    plugin_paths = [str(Path(p).resolve()) for p in plugins or []]
    jobs = []
    for run in planned_runs(dataclasses.replace(request, results_dir=results_dir), configs, dataset, device):
        single = dataclasses.replace(
            request, baselines=[by_name[run.config.baseline.name]], seeds=[run.seed],
            results_dir=results_dir, cache_dir=cache_dir, quiet=True,
        )
        jobs.append(RunJob(single, plugin_paths, threads, run.config, str(run.path), run.digest))
    return jobs


def record_lost(job: RunJob, message: str, engine: str) -> str:
    """Write the failed record of a job that never came back (never over a finished one); the line to show."""
    from vlbench.locks import LockBusy, RunLock, describe_holder
    from vlbench.results.records import failed_record, write_failed_record

    line = f"error: {job.label}: {message}"
    if job.path is None or job.config is None:
        return line
    # under the run's lock, as every writer of its files: a job that lives on after all must not be overwritten
    lock = RunLock(Path(job.path))
    try:
        lock.acquire()
    except LockBusy as busy:
        return f"{line}; its record is not written: {describe_holder(busy.holder)} holds its lock"
    try:  # the worker's device is unknown here
        return write_failed_record(Path(job.path), lambda: failed_record(
            job.config, job.request.seeds[0], job.digest, f"{engine} job (lost)", JobLost(message)), line)
    finally:
        lock.release()


def run_job(job: RunJob) -> JobReport:
    """Worker entry point: run one (baseline, seed) through ``run_task``; its record lands in the shared folder.

    A failed run is reported (``run_task`` has written its failed record), not raised: running it again
    would fail the same way. What escapes ``run_task`` (a crash, a lost node) propagates so that the
    executor retries the job.
    """
    from vlbench.registry import load_plugins
    from vlbench.runner import run_task

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)  # one job per reserved CPU set, not every core of the node
    load_plugins(job.plugins)  # a replaced name is said on the worker's stderr
    report = JobReport(job.label)
    try:
        outcome = run_task(job.request, echo=report.messages.append,
                           on_error=lambda message, exc: report.notes.append(f"error: {message}"),
                           warn=report.notes.append)
    except VLBenchError as exc:  # bad input found in the worker (e.g. a spec that only resolves there)
        report.notes.append(f"error: {job.label}: {exc}")
        request = job.request
        report.failed.append((request.baselines[0].name, request.seeds[0], str(exc)))
        return report
    report.written = [str(p) for p in outcome.written]
    report.skipped = [str(p) for p in outcome.skipped]
    report.failed = list(outcome.failed)
    report.busy = [str(p) for p in getattr(outcome, "busy", [])]
    return report


def merge_reports(reports: list[JobReport]) -> Any:
    """The ``RunOutcome`` of a whole sweep from its jobs' reports."""
    from vlbench.runner import RunOutcome

    outcome = RunOutcome()
    for report in reports:
        outcome.written.extend(Path(p) for p in report.written)
        outcome.skipped.extend(Path(p) for p in report.skipped)
        outcome.failed.extend(report.failed)
        outcome.busy.extend(Path(p) for p in report.busy)
    return outcome
