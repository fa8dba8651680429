"""Executors map the (task, baseline, seed) runs of one ``vlbench run`` onto an engine.

``local`` runs them in this process; ``ray`` submits each as a Ray task; ``slurm`` submits each as a
Slurm job through submitit. Every job writes an ordinary record into the one results folder, and the
parent returns the same ``RunOutcome`` as the in-process loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from vlbench.executors.options import EXECUTOR_NAMES, ExecutorOptions, make_options, split_executor_overrides

__all__ = ["EXECUTOR_NAMES", "ExecutorOptions", "make_options", "split_executor_overrides", "execute"]


def execute(request: Any, options: ExecutorOptions, *, plugins: Optional[list[str]] = None,
            echo: Callable[[str], None] = print, on_error: Optional[Callable[[str, BaseException], None]] = None,
            warn: Optional[Callable[[str], None]] = None) -> Any:
    """Run every (baseline, seed) of ``request`` with the chosen executor; returns a ``RunOutcome``.

    ``echo`` hears progress lines, ``warn`` notes and (for remote jobs) failures, ``on_error`` the
    failures of in-process runs with their exception (see ``runner.run_task``).
    """
    if options.name == "local":
        from vlbench.executors.local import run_locally

        return run_locally(request, echo, on_error, warn)
    warn = warn or echo
    from vlbench.executors.jobs import merge_reports, plan_jobs

    if options.name == "ray":  # a missing engine is bad input: say so before building anything
        from vlbench.executors.ray_executor import require_ray as require_engine
    else:
        from vlbench.executors.slurm_executor import require_submitit as require_engine
    require_engine()
    threads = int(options.cpus_per_run) if options.cpus_per_run and options.cpus_per_run >= 1 else None
    jobs = plan_jobs(request, plugins, threads, echo)
    if options.name == "ray":
        from vlbench.executors.ray_executor import run_on_ray

        reports = run_on_ray(jobs, options, echo, warn)
    else:
        from vlbench.executors.slurm_executor import run_on_slurm

        reports = run_on_slurm(jobs, options, echo, warn, Path(request.results_dir))
    return merge_reports(reports)
