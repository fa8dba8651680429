"""The sweep over planned runs: each (baseline, seed) under its lock, skipped, resumed or run, and recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vlbench import distributed
from vlbench.data.loading import load_dataset
from vlbench.data.subsets import apply_train_subset
from vlbench.failures import describe_failure, is_out_of_memory, release_memory
from vlbench.data.integrity import file_sha256
from vlbench.io import atomic_write_json, read_json
from vlbench.locks import LockBusy, RunLock, describe_holder
from vlbench.plan import (
    PlannedRun,
    RunRequest,
    drop_unavailable,
    planned_runs,
    resolve_runs,
    split_request_by_seed,
    subset_seed,
)
from vlbench.registry import TASK_TYPES
from vlbench.results.records import (
    archived_record_path,
    failed_record,
    predictions_path,
    previous_record,
    set_aside_record,
    write_failed_record,
)
from vlbench.runner.one_run import TokenizerCache, run_one
from vlbench.training.checkpoint import checkpoint_dir_for, remove_checkpoints
from vlbench.training.device import describe_device, get_accelerator, resolve_precision
from vlbench.training.memory import PeakMemory

__all__ = ["RunOutcome", "run_task"]


@dataclass
class RunOutcome:
    """What happened to each (baseline, seed): written, skipped, failed, or busy in another process."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)


def _report_failure(run: PlannedRun, device: Any, exc: BaseException) -> str:
    """Write the failed record (never over a finished one); returns the one line that tells the user."""
    failure = describe_failure(exc)
    what = f"{run.config.baseline.name} seed {run.seed} failed: {failure['type']}: {failure['reason']}"
    if failure["hint"] and failure["hint"] not in failure["reason"]:
        what += f" (try {failure['hint']})"
    return write_failed_record(
        run.path, lambda: failed_record(run.config, run.seed, run.digest, describe_device(device), exc), what)


def _missing_measure(path: Path, config: Any) -> Optional[str]:
    """What a finished record lacks that the run's config asks to measure (EMAP, the invariance check), or None.

    Such measures are left out of the config hash (they change no score), so a finished record of the same
    config may predate the request; the run is then done again (checkpoints are not kept after a run).
    """
    wanted = config.training.emap_items
    robustness = config.training.robustness
    if not wanted and not config.training.check_eval_invariance and robustness is None and not config.training.keep_model:
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    trained = (record.get("training") or {}).get("steps") or (record.get("parameters") or {}).get("total")
    if config.training.keep_model and trained and not record.get("weights_file"):
        return "its record kept no trained weights"
    lacking = _missing_robustness(record, robustness) if robustness is not None else None
    if lacking is not None:
        return lacking
    if config.training.check_eval_invariance and trained and not record.get("eval_invariance"):
        return "its record has no evaluation-invariance check"
    if not wanted or "image" not in (record.get("modalities") or []):
        return None
    block = record.get("emap") or {}
    test_items = ((record.get("data") or {}).get("sizes") or {}).get("test")
    expected = min(wanted, test_items) if isinstance(test_items, int) else wanted
    if "skipped" in block or block.get("items") == expected:
        return None
    return f"its record has no EMAP on {expected} test items"


def _missing_robustness(record: dict[str, Any], settings: Any) -> Optional[str]:
    """What the record's robustness block lacks of the suites and sizes asked for, or None."""
    block = record.get("robustness")
    if not isinstance(block, dict):
        return "its record has no robustness suites"
    if "skipped" in block:
        return None
    missing = [s for s in settings.suites if s not in block]
    corruptions, attack = block.get("corruptions") or {}, block.get("attack") or {}
    if missing:
        return f"its record has no {missing[0]} suite"
    if corruptions.get("applies") and corruptions.get("severities") != settings.severities:
        return "its record scored other corruption severities"
    if attack.get("applies") and (attack.get("budgets") != settings.attack_budgets
                                  or attack.get("steps") != settings.attack_steps):
        return "its record attacked with other PGD budgets or steps"
    return None


def _already_done(run: PlannedRun, request: RunRequest, echo: Callable[[str], None], outcome: RunOutcome,
                  quiet: bool = False) -> bool:
    """True (and noted as skipped) when a finished record with this config exists and --force is off."""
    path, digest, name, seed = run.path, run.digest, run.config.baseline.name, run.seed
    previous, status = previous_record(path)
    if previous == digest and status == "ok" and not request.force:
        lacking = _missing_measure(path, run.config)
        if lacking is None:
            echo(f"skip {name} seed {seed}: {path} exists with the same config (use --force)")
            outcome.skipped.append(path)
            return True
        if not quiet:
            echo(f"{name} seed {seed}: {lacking}; running again")
        return False
    kept = archived_record_path(path, digest)
    if not request.force and previous_record(kept) == (digest, "ok") and _missing_measure(kept, run.config) is None:
        echo(f"skip {name} seed {seed}: {kept} holds this config's finished run (use --force)")
        outcome.skipped.append(kept)
        return True
    if quiet:
        return False
    if previous == digest and status != "ok":
        echo(f"{name} seed {seed} failed last time ({path}); running again")
    elif previous is not None and previous != digest:
        echo(f"config of {name} seed {seed} changed since {path}; running again")
    return False


def _attempt(run: PlannedRun, task: Any, dataset: Any, tokenizers: TokenizerCache, accelerator: Any, progress: Any,
             request: RunRequest, outcome: RunOutcome, echo: Callable[[str], None],
             report: Callable[[str, BaseException], None], warn: Callable[[str], None]) -> None:
    """Run one (baseline, seed) under its lock: a finished record, or a failed one and a report."""
    path, config, seed, digest = run.path, run.config, run.seed, run.digest
    try:
        with PeakMemory(accelerator.device) as memory:
            record = run_one(config, seed, task, dataset, tokenizers, accelerator, progress, digest,
                             cache_dir=request.cache_dir, checkpoint_dir=checkpoint_dir_for(path), warn=warn)
        record["memory"] = {"peak_bytes": memory.peak, "kind": memory.kind}
        distributed.on_main(lambda: _write_outputs(run, task, record))  # one writer; its failure fails all
    except Exception as exc:  # noqa: BLE001  one run's failure, whatever it is, must not end the sweep
        failure = describe_failure(exc)
        if not distributed.is_agreed(exc):  # this process alone: the others wait in a collective it will not join
            distributed.fail_fast(f"{config.baseline.name} seed {seed} failed on process {distributed.rank()} of "
                                  f"{distributed.world_size()}: {failure['type']}: {failure['reason']}; every "
                                  "process of the run stops (a rerun resumes from its last checkpoint)")
        if is_out_of_memory(exc):
            release_memory()
        outcome.failed.append((config.baseline.name, seed, failure["reason"]))
        if distributed.is_main():
            report(_report_failure(run, accelerator.device, exc), exc)
        return
    outcome.written.append(path)
    primary = record["test"]["metrics"].get(config.task.primary_metric)
    shown = f"{primary:.2f}" if isinstance(primary, (int, float)) else str(primary)
    echo(
        f"{config.baseline.name} seed {seed}: test {config.task.primary_metric} = {shown} "
        f"({record['timing']['wall_seconds']:.0f} s) -> {path}"
    )


def _write_outputs(run: PlannedRun, task: Any, record: dict[str, Any]) -> None:
    """Write a finished run's predictions, PEFT weights and record, then drop its checkpoints (main process)."""
    path, config = run.path, run.config
    record.setdefault("status", "ok")
    pred_path = predictions_path(path, task.predictions_suffix)
    task.write_predictions(record.pop("_predictions"), pred_path)
    record["predictions_file"] = pred_path.name
    weights = record.pop("_weights", None)
    if weights is not None:  # PEFT runs (and runs asked to keep their model) keep the weights training changed
        from vlbench.peft.checkpoint import save_trained_weights, weights_path

        meta = {"baseline": config.baseline.name, "seed": run.seed, "config_hash": run.digest}
        saved = save_trained_weights(weights, weights_path(path), meta)
        record["weights_file"], record["weights_sha256"] = saved.name, file_sha256(saved)
    atomic_write_json(path, record)
    remove_checkpoints(path)  # the record holds everything now


def _take_lock(lock: RunLock) -> Optional[tuple[str, str]]:
    """Acquire ``lock``; who holds it (description, lock path) when another live process does, else None."""
    try:
        lock.acquire()
    except LockBusy as busy:
        return describe_holder(busy.holder), str(busy.path)
    return None


def _start_over(run: PlannedRun, request: RunRequest, echo: Callable[[str], None]) -> None:
    """Before a run (re)starts: --force drops an earlier attempt's checkpoint; another config's record is kept."""
    if request.force:
        remove_checkpoints(run.path)
    set_aside_record(run.path, run.digest, echo)


def _silent(message: str) -> None:
    """Echo of the processes other than the main one."""


def run_task(request: RunRequest, *, echo: Callable[[str], None] = print,
             on_error: Optional[Callable[[str, BaseException], None]] = None,
             warn: Optional[Callable[[str], None]] = None) -> RunOutcome:
    """Train/fit and score every selected baseline under every seed; write one record per run.

    A run that raises becomes a failed record and the sweep goes on; ``on_error`` (default: ``echo``)
    hears of each failure once, with the exception. Ctrl-C (KeyboardInterrupt) still stops the sweep.
    Each run holds its lock while it trains; a run locked by another live process is left to it
    (``warn``, default ``echo``, says so) unless ``request.wait``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    report = on_error or (lambda message, exc: echo(f"error: {message}"))
    notify = warn or echo
    configs = drop_unavailable(resolve_runs(request), echo)
    per_seed = split_request_by_seed(request, configs, lambda part: run_task(part, echo=echo, on_error=on_error, warn=warn))
    if per_seed is not None:  # each seed draws its own training subset, so each gets its own task
        return per_seed
    task_config = configs[0]
    # a missing device, or a precision it cannot run, fails before the dataset is built
    accelerator = get_accelerator(request.device)  # joins the process group under accelerate launch / torchrun
    for config in configs:
        resolve_precision(config.training.precision, accelerator.device)
    main_process = distributed.is_main()
    if not main_process:  # one process reports, the others only compute
        echo = notify = _silent
    def load(quiet: bool) -> Any:
        return load_dataset(task_config.dataset, task_config.task.data, request.cache_dir, quiet)

    built: list[Any] = []
    distributed.on_main(lambda: built.append(load(request.quiet)))  # the main process builds the cache ...
    dataset = distributed.agree(lambda: built[0] if built else load(True))  # ... then the others read it
    if task_config.task.train_subset is not None:
        dataset = apply_train_subset(dataset, task_config.task, subset_seed(request, configs))
    task = TASK_TYPES.get(task_config.task.type)(task_config.task, dataset)
    tokenizers = TokenizerCache(task)
    outcome = RunOutcome()
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=request.quiet or not main_process,
    )
    with progress:
        for run in planned_runs(request, configs, dataset, accelerator.device):
            # with several processes the main one decides and writes, and the others follow it into the same
            # runs; what it decides, or the error it meets, reaches all of them (on_main)
            if distributed.on_main(lambda: _already_done(run, request, echo, outcome)):
                continue
            lock = RunLock(run.path, wait=request.wait, note=notify) if main_process else None
            holder = distributed.on_main(lambda: _take_lock(lock))
            if holder is not None:
                notify(f"skip {run.config.baseline.name} seed {run.seed}: {holder[0]} is running it "
                       f"(lock {holder[1]}); rerun later, or pass --wait to wait for it")
                outcome.busy.append(run.path)
                continue
            try:
                # while this process waited, the holder may have finished the same run
                if distributed.on_main(lambda: _already_done(run, request, echo, outcome, quiet=True)):
                    continue
                distributed.on_main(lambda: _start_over(run, request, echo))
                _attempt(run, task, dataset, tokenizers, accelerator, progress, request, outcome, echo, report, notify)
            finally:
                if lock is not None:
                    lock.release()
    return outcome
