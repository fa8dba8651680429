"""Executor settings: ``--executor``, ``--cpus-per-run``, ``--gpus-per-run`` and ``--set executor.KEY=VALUE``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from vlbench.errors import VLBenchError
from vlbench.specs import parse_override

__all__ = ["EXECUTOR_NAMES", "ExecutorOptions", "split_executor_overrides", "make_options"]

EXECUTOR_NAMES = ("local", "ray", "slurm")

# which executors read each setting; a setting given to an executor that ignores it is refused
_APPLIES: dict[str, tuple[str, ...]] = {
    "cpus_per_run": ("ray", "slurm"),
    "gpus_per_run": ("ray", "slurm"),
    "max_retries": ("ray", "slurm"),
    "address": ("ray",),
    "cluster": ("slurm",),
    "partition": ("slurm",),
    "time": ("slurm",),
    "mem_gb": ("slurm",),
    "account": ("slurm",),
    "qos": ("slurm",),
    "constraint": ("slurm",),
    "folder": ("slurm",),
}


@dataclass
class ExecutorOptions:
    """How the runs of one ``vlbench run`` are executed: in this process, as Ray tasks, or as Slurm jobs."""

    name: str = "local"
    cpus_per_run: Optional[float] = None  # Ray num_cpus / Slurm cpus_per_task (default 1)
    gpus_per_run: Optional[float] = None  # Ray num_gpus / Slurm gpus_per_node (default 0)
    max_retries: int = 2  # a crashed or pre-empted job is run again this many times (it resumes)
    address: Optional[str] = None  # Ray cluster address (default: $RAY_ADDRESS, else a local Ray)
    cluster: Optional[str] = None  # submitit cluster: None = Slurm when available, "local" = subprocesses
    partition: Optional[str] = None
    time: int = 240  # minutes per job (Slurm time limit; a job pre-empted or timed out is requeued)
    mem_gb: Optional[float] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    folder: Optional[Path] = None  # submitit logs and pickles (default: RESULTS/.submitit)
    given: set[str] = field(default_factory=set)

    def validate(self) -> "ExecutorOptions":
        """Refuse unknown executors, settings the chosen executor would ignore, and bad values."""
        if self.name not in EXECUTOR_NAMES:
            raise VLBenchError(f"--executor {self.name!r}: use one of {', '.join(EXECUTOR_NAMES)}.")
        for key in sorted(self.given):
            if self.name not in _APPLIES[key]:
                users = " or ".join(_APPLIES[key])
                raise VLBenchError(
                    f"executor setting {key!r} applies to --executor {users}, not {self.name}; drop it or change --executor."
                )
        for key in ("cpus_per_run", "gpus_per_run", "mem_gb"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise VLBenchError(f"executor setting {key} = {value}: must be zero or more.")
        if self.max_retries < 0 or self.time <= 0:
            raise VLBenchError("executor settings: max_retries must be >= 0 and time (minutes) > 0.")
        if self.cluster not in (None, "slurm", "local", "debug"):
            raise VLBenchError(f"executor.cluster {self.cluster!r}: use slurm, local or debug (default: slurm when available).")
        return self


_TYPES: dict[str, type] = {"cpus_per_run": float, "gpus_per_run": float, "max_retries": int, "time": int,
                           "mem_gb": float, "folder": Path}


def split_executor_overrides(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Separate ``executor.KEY=VALUE`` settings from the spec overrides of ``--set``."""
    rest: list[str] = []
    settings: dict[str, Any] = {}
    known = sorted(_APPLIES)
    for text in overrides:
        if not text.strip().startswith("executor."):
            rest.append(text)
            continue
        path, value = parse_override(text)
        key = ".".join(path[1:])
        if key not in _APPLIES:
            from vlbench.registry import did_you_mean

            raise VLBenchError(f"--set {text}: unknown executor setting {key!r}.{did_you_mean(key, known)} "
                               f"Known: {', '.join(known)}.")
        settings[key] = value
    return rest, settings


def make_options(name: str, settings: dict[str, Any], **flags: Any) -> ExecutorOptions:
    """Executor options from ``--set executor.*`` settings and flags (a flag wins over the same setting)."""
    merged = dict(settings)
    merged.update({k: v for k, v in flags.items() if v is not None})
    options = ExecutorOptions(name=name)
    names = {f.name for f in fields(ExecutorOptions)}
    for key, value in merged.items():
        if key not in names or key in ("name", "given"):
            raise VLBenchError(f"unknown executor setting {key!r}.")
        cast = _TYPES.get(key)
        if cast is not None and value is not None:
            try:
                value = cast(value)
            except (TypeError, ValueError):
                raise VLBenchError(f"executor setting {key} = {value!r}: expected {cast.__name__}.") from None
        elif value is not None:
            value = str(value)
        setattr(options, key, value)
        options.given.add(key)
    return options.validate()
