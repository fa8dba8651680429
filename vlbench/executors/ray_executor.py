"""Each (baseline, seed) as a Ray task with the CPUs/GPUs it asks for; a crashed or lost task is retried."""

from __future__ import annotations

from typing import Callable

from vlbench.errors import VLBenchError
from vlbench.executors.jobs import JobReport, RunJob, record_lost, run_job
from vlbench.executors.options import ExecutorOptions

__all__ = ["run_on_ray", "require_ray"]


def require_ray():
    """The ray module, or one error line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise VLBenchError("--executor ray needs Ray: pip install 'ray[default]' (or use --executor local).") from None
    return ray


def run_on_ray(jobs: list[RunJob], options: ExecutorOptions, echo: Callable[[str], None],
               warn: Callable[[str], None]) -> list[JobReport]:
    """Submit every job, wait for all, return their reports in submission order.

    Connects to ``executor.address`` (or $RAY_ADDRESS, else starts a local Ray) unless Ray is already
    initialised in this process, in which case that instance is used and left running.
    """
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(run_job).options(
            num_cpus=options.cpus_per_run if options.cpus_per_run is not None else 1,
            num_gpus=options.gpus_per_run or 0,
            max_retries=options.max_retries,  # the worker process died (pre-emption, OOM kill, lost node)
            retry_exceptions=True,  # run_job returns known run failures; anything it raises is worth a retry
        )
        refs = [remote.remote(job) for job in jobs]
        echo(f"submitted {len(refs)} run(s) to Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs in the cluster)")
        reports: list[JobReport] = []
        try:
            for job, ref in zip(jobs, refs):
                reports.append(_collect(ray, job, ref, options, echo, warn))
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        return reports
    finally:
        if started_here:
            ray.shutdown()


def _collect(ray, job: RunJob, ref, options: ExecutorOptions, echo: Callable[[str], None],
             warn: Callable[[str], None]) -> JobReport:
    try:
        report = ray.get(ref)
    except ray.exceptions.RayError as exc:  # retries exhausted: a failed run, the others are kept
        cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        request = job.request
        message = f"Ray task failed after {options.max_retries + 1} attempt(s): {cause}"
        warn(record_lost(job, message, "ray"))
        return JobReport(job.label, failed=[(request.baselines[0].name, request.seeds[0], message)])
    report.replay(echo, warn)
    return report
