"""Each (baseline, seed) as a Slurm job through submitit; pre-empted jobs are requeued, failed ones resubmitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vlbench.errors import VLBenchError
from vlbench.executors.jobs import JobReport, RunJob, record_lost, run_job
from vlbench.executors.options import ExecutorOptions

__all__ = ["CheckpointableRun", "run_on_slurm", "submitit_parameters", "require_submitit"]


def require_submitit():
    """The submitit module, or one error line saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise VLBenchError("--executor slurm needs submitit: pip install submitit (or use --executor local).") from None
    return submitit


try:  # the job class must live at module level so that submitit can pickle it by reference
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # run_on_slurm says what to install before anything is submitted
    _Checkpointable = object  # type: ignore[assignment,misc]


class CheckpointableRun(_Checkpointable):  # type: ignore[misc,valid-type]
    """A run that submitit requeues with the same job when Slurm pre-empts it or its time runs out.

    The requeued run starts again through ``run_task``, which resumes from the run's checkpoint.
    """

    def __call__(self, job: RunJob) -> JobReport:
        """Run the job in the Slurm allocation."""
        return run_job(job)


def submitit_parameters(options: ExecutorOptions) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments for the executor options (Slurm ones prefixed)."""
    gpus = options.gpus_per_run or 0
    cpus = options.cpus_per_run if options.cpus_per_run is not None else 1
    if gpus != int(gpus) or cpus != int(cpus) or cpus < 1:
        raise VLBenchError("--executor slurm: --cpus-per-run must be a whole number >= 1 and --gpus-per-run a whole number.")
    params: dict[str, Any] = {"name": "vlbench", "timeout_min": options.time, "cpus_per_task": int(cpus),
                              "gpus_per_node": int(gpus), "tasks_per_node": 1, "nodes": 1}
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(options, key)
        if value is not None:
            params[f"slurm_{key}"] = value
    return params


def run_on_slurm(jobs: list[RunJob], options: ExecutorOptions, echo: Callable[[str], None],
                 warn: Callable[[str], None], results_dir: Path) -> list[JobReport]:
    """Submit every job as one array, wait, resubmit failed jobs up to ``max_retries`` times."""
    submitit = require_submitit()
    folder = Path(options.folder) if options.folder else Path(results_dir) / ".submitit"
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster)
    except RuntimeError as exc:  # no sbatch on this machine and no cluster named
        raise VLBenchError(f"--executor slurm: {exc} (set executor.cluster=local to run the jobs as local processes).") from None
    executor.update_parameters(**submitit_parameters(options))
    runner = CheckpointableRun()
    with executor.batch():
        submitted = [executor.submit(runner, job) for job in jobs]
    echo(f"submitted {len(submitted)} run(s) to {executor.cluster} (logs in {folder})")
    reports: list[JobReport] = []
    try:
        for job, handle in zip(jobs, submitted):
            reports.append(_wait(executor, runner, job, handle, options, echo, warn))
    except KeyboardInterrupt:
        for handle in submitted:
            handle.cancel(check=False)
        raise
    return reports


def _wait(executor: Any, runner: Any, job: RunJob, handle: Any, options: ExecutorOptions,
          echo: Callable[[str], None], warn: Callable[[str], None]) -> JobReport:
    attempt = 1
    while True:
        try:
            report = handle.result()
            break
        except Exception as exc:  # noqa: BLE001  submitit raises the job's own error or an UncompletedJobError
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if attempt > options.max_retries:
                message = f"job {handle.job_id} failed after {attempt} attempt(s): {reason}"
                warn(record_lost(job, message, "slurm"))
                request = job.request
                return JobReport(job.label, failed=[(request.baselines[0].name, request.seeds[0], message)])
            warn(f"{job.label}: job {handle.job_id} failed ({reason}); resubmitting ({attempt}/{options.max_retries})")
            attempt += 1
            handle = executor.submit(runner, job)
    report.replay(echo, warn)
    return report
