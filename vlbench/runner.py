"""Runs every (baseline, seed) of a task: build data once, train or fit, score the test split, write records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vlbench import distributed
from vlbench.errors import SpecError, VLBenchError
from vlbench.failures import describe_failure, is_out_of_memory, release_memory
from vlbench.io import atomic_write_json, read_json
from vlbench.locks import LockBusy, RunLock, describe_holder
from vlbench.models.base import FittedModel, validate_model_config
from vlbench.models.pretrained import (
    WORD_LEVEL,
    describe_pretrained,
    load_tokenizer,
    missing_requirement,
    pretrained_identity,
    resolve_pretrained,
    tokenizer_signature,
)
from vlbench.registry import DATASETS, MODELS, TASK_TYPES
from vlbench.results.ablation import ablation_block
from vlbench.results.escape import rich_text
from vlbench.results.records import (
    RECORD_SCHEMA,
    git_commit,
    now_iso,
    package_versions,
    predictions_path,
    record_path,
)
from vlbench.specs import BaselineSpec, RunConfig, TaskSpec, available_specs, config_hash, load_baseline_spec, resolve_run_config
from vlbench.training.device import describe_device, get_accelerator, resolve_precision
from vlbench.progress import evaluation_progress
from vlbench.training.checkpoint import checkpoint_dir_for, remove_checkpoints
from vlbench.training.memory import PeakMemory
from vlbench.training.seeding import seed_everything
from vlbench.training.trainer import fit

__all__ = ["RunRequest", "RunOutcome", "select_baselines", "split_dataset_arg", "load_dataset", "run_task", "record_identity"]


@dataclass
class RunRequest:
    """What the user asked ``vlbench run`` for."""

    task: TaskSpec
    baselines: list[BaselineSpec]
    results_dir: Path
    seeds: Optional[list[int]] = None
    dataset: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    training_overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    force: bool = False
    cache_dir: Optional[Path] = None
    quiet: bool = False
    wait: bool = False


@dataclass
class RunOutcome:
    """What happened to each (baseline, seed): written, skipped, failed, or busy in another process."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)


def select_baselines(task: TaskSpec, names: list[str], all_baselines: bool, dataset: Optional[str] = None,
                     echo: Optional[Callable[[str], None]] = None) -> list[BaselineSpec]:
    """Baseline specs by name, or every spec that lists the task; refuses ones that do not support it.

    With ``all_baselines``, a spec that names ``datasets:`` (e.g. pretrained models at full size) is
    selected only on those datasets (``dataset``, default the task's); ``echo`` hears which were left out.
    """
    if all_baselines:
        specs = [load_baseline_spec(name) for name in available_specs("baselines")]
        supporting = [s for s in specs if task.name in s.tasks]
        if not supporting:
            raise VLBenchError(f"no baseline supports task {task.name!r}.")
        dataset_name = split_dataset_arg(dataset or task.dataset)[0]
        chosen = [s for s in supporting if s.datasets is None or dataset_name in s.datasets]
        left_out = [s.name for s in supporting if s not in chosen]
        if left_out and echo is not None:
            echo(f"not selected on {dataset_name}: {', '.join(left_out)} (sized for other datasets; name one with "
                 "--baseline to run it anyway)")
        if not chosen:
            raise VLBenchError(
                f"no baseline of task {task.name!r} is selected on dataset {dataset_name!r} by --all-baselines; "
                f"name them with --baseline ({', '.join(left_out)})."
            )
        return chosen
    if not names:
        raise VLBenchError("name at least one --baseline, or pass --all-baselines.")
    chosen = []
    for name in names:
        spec = load_baseline_spec(name)
        if task.name not in spec.tasks:
            raise VLBenchError(
                f"baseline {spec.name!r} does not support task {task.name!r} (it supports: {', '.join(spec.tasks)})."
            )
        chosen.append(spec)
    return chosen


def split_dataset_arg(value: str) -> tuple[str, Optional[str]]:
    """``NAME[:PATH]`` -> (name, path)."""
    name, sep, path = value.partition(":")
    return name, (path if sep and path else None)


def load_dataset(dataset_arg: str, options: dict[str, Any], cache_dir: Optional[Path], quiet: bool):
    """Build (or load from cache) the dataset named by ``NAME[:PATH]`` with the task's data options."""
    from vlbench.data.base import default_cache_dir

    name, path = split_dataset_arg(dataset_arg)
    builder = DATASETS.get(name)
    return builder(path, options, Path(cache_dir) if cache_dir else default_cache_dir(), quiet=quiet)


def _count_parameters(model: Any) -> tuple[int, int]:
    if not isinstance(model, torch.nn.Module):
        return 0, 0
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


class _TokenizerCache:
    """Tokenizers by source, each loaded once; the task is encoded with the one the current run declares.

    Every run reads text with the tokenizer its resolved config names (``baseline.tokenizer``), so a
    baseline's numbers never depend on which other baselines run beside it or which packages are installed.
    """

    def __init__(self, task: Any, configs: Optional[list[RunConfig]] = None) -> None:
        self.task = task
        self._loaded: dict[str, Any] = {}
        self._signatures: dict[str, str] = {}
        self.prepared_for: Optional[str] = None

    def get(self, source: Optional[str] = None) -> Any:
        """The tokenizer ``source`` (None: word-level), with the task's splits encoded for it."""
        source = source or WORD_LEVEL
        if source not in self._loaded:
            tokenizer = load_tokenizer(source, self.task.training_texts())
            self._loaded[source] = tokenizer
            self._signatures[source] = tokenizer_signature(tokenizer)
        if self.prepared_for != source:
            self.task.prepare(self._loaded[source])
            self.prepared_for = source
        return self._loaded[source]

    def signature(self, source: Optional[str] = None) -> Optional[str]:
        """The vocabulary digest of a loaded tokenizer."""
        return self._signatures.get(source or WORD_LEVEL)

    @staticmethod
    def source_for(config: RunConfig) -> Optional[str]:
        """The tokenizer a baseline's numbers depend on (None: the model reads no text)."""
        reads_text = "text" in MODELS.get(config.baseline.model).modalities
        return (config.baseline.tokenizer or WORD_LEVEL) if reads_text else None


def _drop_unavailable(configs: list[RunConfig], echo: Callable[[str], None]) -> list[RunConfig]:
    """Leave out baselines whose optional pretrained package is not installed (an error when none is left)."""
    kept, reasons = [], []
    for config in configs:
        why = missing_requirement(config.baseline.pretrained) or missing_requirement(config.baseline.tokenizer)
        if why:
            echo(f"skip {config.baseline.name}: {why}")
            reasons.append(f"baseline {config.baseline.name!r}: {why}")
        else:
            kept.append(config)
    if not kept:
        raise VLBenchError(reasons[0])
    return kept


def _resolve_all(request: RunRequest) -> list[RunConfig]:
    """Resolve every baseline's config; a ``baseline.config.*`` override applies where the model has that field."""
    configs = []
    applicable_somewhere: dict[str, bool] = {}
    for spec in request.baselines:
        overrides = []
        for text in request.overrides:
            key = text.partition("=")[0].strip()
            if key.startswith("baseline.config."):
                field_name = key.split(".")[2]
                has_field = field_name in MODELS.get(spec.model).Config.model_fields
                applicable_somewhere[key] = applicable_somewhere.get(key, False) or has_field
                if not has_field:
                    continue
            overrides.append(text)
        config = resolve_run_config(
            request.task, spec, dataset=request.dataset, overrides=overrides, training_overrides=request.training_overrides
        )
        validate_model_config(config.baseline.model, config.baseline.config, f"baseline {spec.name!r}")
        from vlbench.peft.config import parse_peft

        parse_peft(config.baseline.peft, f"baseline {spec.name!r}")  # a bad peft block fails before any training
        configs.append(config)
    for key, ok in applicable_somewhere.items():
        if not ok:
            models = ", ".join(sorted({s.model for s in request.baselines}))
            raise SpecError(f"--set {key}: no selected baseline's model type ({models}) has a setting {key.split('.')[2]!r}.")
    return configs


def _previous_record(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(config hash, status) of the record already at ``path``; (None, None) when absent or unreadable."""
    try:
        record = read_json(path)
    except (OSError, ValueError, RecursionError):
        return None, None
    if not isinstance(record, dict):
        return None, None
    digest = record.get("config_hash")
    return (digest if isinstance(digest, str) else None), (record.get("status") or "ok")



def record_identity(config: RunConfig, seed: int, digest: str, status: str) -> dict[str, Any]:
    """The fields every run record starts with: schema, status, what ran (task, dataset, baseline, seed), its config."""
    return {
        "schema": RECORD_SCHEMA,
        "status": status,
        "task": config.task.name,
        "dataset": config.dataset.partition(":")[0],
        "baseline": config.baseline.name,
        "seed": seed,
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "primary_metric": config.task.primary_metric,
    }

def _failed_record(config: RunConfig, seed: int, digest: str, device: Any, exc: BaseException) -> dict[str, Any]:
    """A record for a run that did not finish: the run's identity plus what went wrong (no test block)."""
    return {
        **record_identity(config, seed, digest, "failed"),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(device),
        "created": now_iso(),
        "failure": describe_failure(exc),
    }


def _report_failure(path: Path, config: RunConfig, seed: int, digest: str, device: Any, exc: BaseException,
                    previous_status: Optional[str]) -> str:
    """Write the failed record (never over a finished one); returns the one line that tells the user."""
    failure = describe_failure(exc)
    what = f"{config.baseline.name} seed {seed} failed: {failure['type']}: {failure['reason']}"
    if failure["hint"] and failure["hint"] not in failure["reason"]:
        what += f" (try {failure['hint']})"
    if previous_status == "ok":  # a finished result from an earlier config or run is worth more than the failure
        return f"{what}; the finished record at {path} is kept"
    try:
        atomic_write_json(path, _failed_record(config, seed, digest, device, exc))
    except (OSError, ValueError, VLBenchError) as write_error:
        return f"{what}; the failed record could not be written to {path}: {write_error}"
    return f"{what} -> {path}"


def _already_done(path: Path, digest: str, request: RunRequest, config: RunConfig, seed: int,
                  echo: Callable[[str], None], outcome: RunOutcome, quiet: bool = False) -> bool:
    """True (and noted as skipped) when a finished record with this config exists and --force is off."""
    previous, status = _previous_record(path)
    if previous == digest and status == "ok" and not request.force:
        echo(f"skip {config.baseline.name} seed {seed}: {path} exists with the same config (use --force)")
        outcome.skipped.append(path)
        return True
    kept = archived_record_path(path, digest)
    if not request.force and _previous_record(kept) == (digest, "ok"):
        echo(f"skip {config.baseline.name} seed {seed}: {kept} holds this config's finished run (use --force)")
        outcome.skipped.append(kept)
        return True
    if quiet:
        return False
    if previous == digest and status != "ok":
        echo(f"{config.baseline.name} seed {seed} failed last time ({path}); running again")
    elif previous is not None and previous != digest:
        echo(f"config of {config.baseline.name} seed {seed} changed since {path}; running again")
    return False



def archived_record_path(path: Path, digest: str) -> Path:
    """Where the finished record of another config of the same run is kept: ``seed-N.cfg-<hash>.json``."""
    return path.with_name(f"{path.stem}.cfg-{digest}{path.suffix}")


def _set_aside(path: Path, digest: str, request: RunRequest, echo: Callable[[str], None]) -> None:
    """Before a run starts over: keep a finished record of another config, and drop stale checkpoints.

    Records of one (task, dataset, baseline, seed) share a path, so a run with a new config would
    otherwise replace the finished result of the old one; it moves, with its predictions and weights,
    to :func:`archived_record_path` (tables read it as a row of its own config). ``--force`` trains from
    scratch, so it also removes a checkpoint left by an earlier attempt.
    """
    if request.force:
        remove_checkpoints(path)
    previous, status = _previous_record(path)
    if previous is None or previous == digest or status != "ok":
        return
    target = archived_record_path(path, previous)
    prefix = path.stem + "."
    record = read_json(path)
    for companion in sorted(path.parent.glob(prefix + "*")):
        rest = companion.name[len(prefix):]
        if companion == path or not rest.startswith(("predictions", "weights")):
            continue
        renamed = companion.with_name(f"{target.stem}.{rest}")
        companion.replace(renamed)
        for key in ("predictions_file", "weights_file"):
            if record.get(key) == companion.name:
                record[key] = renamed.name
    atomic_write_json(target, record)
    path.unlink()
    echo(f"kept the finished record of the earlier config as {target}")

def _attempt(path: Path, digest: str, config: RunConfig, seed: int, task: Any, dataset: Any,
             tokenizers: "_TokenizerCache", accelerator: Any, progress: Any, request: RunRequest,
             outcome: RunOutcome, echo: Callable[[str], None],
             report: Callable[[str, BaseException], None]) -> None:
    """Run one (baseline, seed) under its lock: a finished record, or a failed one and a report."""
    try:
        with PeakMemory(accelerator.device) as memory:
            record = _run_one(config, seed, task, dataset, tokenizers, accelerator, progress, digest,
                              cache_dir=request.cache_dir, checkpoint_dir=checkpoint_dir_for(path))
        record["memory"] = {"peak_bytes": memory.peak, "kind": memory.kind}
        if not distributed.is_main():  # only the main process writes predictions, weights and records
            outcome.written.append(path)
            return
        record.setdefault("status", "ok")
        pred_path = predictions_path(path, task.predictions_suffix)
        task.write_predictions(record.pop("_predictions"), pred_path)
        record["predictions_file"] = pred_path.name
        weights = record.pop("_weights", None)
        if weights is not None:  # PEFT runs keep only their trained weights
            from vlbench.peft.checkpoint import save_trained_weights, weights_path

            meta = {"baseline": config.baseline.name, "seed": seed, "config_hash": digest}
            record["weights_file"] = save_trained_weights(weights, weights_path(path), meta).name
        atomic_write_json(path, record)
        remove_checkpoints(path)  # the record holds everything now
    except Exception as exc:  # noqa: BLE001  one run's failure, whatever it is, must not end the sweep
        if is_out_of_memory(exc):
            release_memory()
        _, status = _previous_record(path)
        outcome.failed.append((config.baseline.name, seed, describe_failure(exc)["reason"]))
        if distributed.is_main():
            report(_report_failure(path, config, seed, digest, accelerator.device, exc, status), exc)
        return
    outcome.written.append(path)
    primary = record["test"]["metrics"].get(config.task.primary_metric)
    shown = f"{primary:.2f}" if isinstance(primary, (int, float)) else str(primary)
    echo(
        f"{config.baseline.name} seed {seed}: test {config.task.primary_metric} = {shown} "
        f"({record['timing']['wall_seconds']:.0f} s) -> {path}"
    )


def _run_digest(config: RunConfig, dataset: Any, device: Any) -> str:
    """A run's config hash: its config, the data it reads, the precision ``device`` runs, the number of processes."""
    extra: dict[str, Any] = {"data": dataset.fingerprint,  # the precision the device runs, not "auto"
                             "precision": resolve_precision(config.training.precision, device)}
    if distributed.world_size() > 1:  # more processes, a larger global batch: other numbers
        extra["world_size"] = distributed.world_size()
    weights = pretrained_identity(config.baseline.pretrained)  # weights named by package: version and digest
    if weights:
        extra["weights"] = weights
    return config_hash(config, extra)


def _silent(message: str) -> None:
    """Echo of the processes other than the main one."""


def _distributed_info(config: RunConfig) -> dict[str, Any]:
    """How many processes trained the run and the batch that one optimizer step saw across them."""
    world = distributed.world_size()
    cfg = config.training
    return {"world_size": world, "per_process_batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps,
            "global_batch_size": cfg.batch_size * cfg.grad_accum_steps * world}


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

    from vlbench.protocols.subsets import apply_train_subset, split_request_by_seed, subset_seed

    report = on_error or (lambda message, exc: echo(f"error: {message}"))
    notify = warn or echo
    configs = _drop_unavailable(_resolve_all(request), echo)
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
    with distributed.main_process_first():  # the main process builds the cache, the others then read it
        dataset = load_dataset(task_config.dataset, task_config.task.data, request.cache_dir,
                               request.quiet or not main_process)
    if task_config.task.train_subset is not None:
        dataset = apply_train_subset(dataset, task_config.task, subset_seed(request, configs))
    task = TASK_TYPES.get(task_config.task.type)(task_config.task, dataset)
    tokenizers = _TokenizerCache(task, configs)
    outcome = RunOutcome()
    dataset_name = task_config.dataset.partition(":")[0]
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=request.quiet or not main_process,
    )
    with progress:
        for config in configs:
            seeds = request.seeds if request.seeds is not None else config.training.seeds
            for seed in seeds:
                path = record_path(request.results_dir, config.task.name, dataset_name, config.baseline.name, seed)
                digest = _run_digest(config, dataset, accelerator.device)
                # with several processes the main one decides, and the others follow it into the same runs
                if distributed.broadcast(_already_done(path, digest, request, config, seed, echo, outcome)):
                    continue
                lock = RunLock(path, wait=request.wait, note=notify) if main_process else None
                holder = None
                if lock is not None:
                    try:
                        lock.acquire()
                    except LockBusy as busy:
                        holder = (describe_holder(busy.holder), str(busy.path))
                holder = distributed.broadcast(holder)
                if holder is not None:
                    notify(f"skip {config.baseline.name} seed {seed}: {holder[0]} is running it "
                           f"(lock {holder[1]}); rerun later, or pass --wait to wait for it")
                    outcome.busy.append(path)
                    continue
                try:
                    # while this process waited, the holder may have finished the same run
                    if distributed.broadcast(_already_done(path, digest, request, config, seed, echo, outcome,
                                                           quiet=True)):
                        continue
                    if main_process:
                        _set_aside(path, digest, request, echo)
                    _attempt(path, digest, config, seed, task, dataset, tokenizers, accelerator, progress, request,
                             outcome, echo, report)
                finally:
                    if lock is not None:
                        lock.release()
    return outcome


def _run_one(config: RunConfig, seed: int, task: Any, dataset: Any, tokenizers: _TokenizerCache, accelerator: Any,
             progress: Any, digest: str, cache_dir: Optional[Path] = None,
             checkpoint_dir: Optional[Path] = None) -> dict[str, Any]:
    from vlbench.data.base import default_cache_dir
    from vlbench.peft.apply import trained_state
    from vlbench.peft.assemble import assemble, warm_features

    start = time.perf_counter()
    seed_everything(seed)
    model_cls = MODELS.get(config.baseline.model)
    # always: the task's batches need the encoded targets even without text
    tokenizer = tokenizers.get(config.baseline.tokenizer)
    reads_text = "text" in model_cls.modalities or issubclass(model_cls, FittedModel)
    pretrained = resolve_pretrained(config.baseline.pretrained)
    # assemble also gives the task the encoder's image transform (its own processor for pretrained models)
    assembled = assemble(config, seed, task, tokenizer if reads_text else None, pretrained=pretrained,
                         tokenizer_source=tokenizers.source_for(config), data_fingerprint=dataset.fingerprint,
                         cache_dir=Path(cache_dir) if cache_dir else default_cache_dir())
    built, modalities = assembled.model, assembled.modalities
    weights = features = ablation = None
    eval_seconds = 0.0
    if isinstance(built, FittedModel):
        if callable(getattr(built, "attach", None)):
            built.attach(task)  # a model that reads images takes the task's image store and prompt from here
        results = distributed.on_main(lambda: task.fit_and_evaluate(built, ["validation", "test"]))
        validation, test = results["validation"], results["test"]
        fit_info: dict[str, Any] = {"history": [], "best_epoch": 0, "best_validation": validation.primary, "steps": 0,
                                    "stopped_early": False, "precision": None}
        trainable, total, train_seconds, examples = 0, 0, 0.0, 0
    else:
        model = built
        trainable, total = _count_parameters(model)
        label = rich_text(f"{config.baseline.name} s{seed}")  # progress descriptions are rich markup
        features = warm_features(assembled, task, config.training.eval_batch_size, accelerator.device, progress,
                                 f"{label} features")
        with evaluation_progress(progress, label):
            result = fit(model, task, config.training, accelerator=accelerator, seed=seed, modalities=modalities,
                         progress=progress, label=label, checkpoint_dir=checkpoint_dir, run_id=digest)
            test_start = time.perf_counter()
            test = task.evaluate(model, "test", config.training.eval_batch_size, modalities, accelerator.device)
            if "image" in modalities:  # how much the trained model's score depends on the image
                ablation = ablation_block(
                    dataset, config.task.primary_metric, test.metrics[config.task.primary_metric],
                    lambda: task.evaluate(model, "test", config.training.eval_batch_size, modalities,
                                          accelerator.device), image_ids=task.image_ids("test"), seed=seed)
            eval_seconds = result.eval_seconds + time.perf_counter() - test_start
        validation_best = result.best_validation
        fit_info = {"history": result.history, "best_epoch": result.best_epoch, "best_validation": validation_best,
                    "steps": result.steps, "stopped_early": result.stopped_early, "precision": result.precision,
                    **result.settings()}
        validation = None
        # the trainer counts its training epochs (across resumes) apart from its validation passes
        train_seconds, examples = result.train_seconds, result.train_examples
        if features is not None:
            train_seconds += features["seconds"]  # computing cached features is part of what training cost
        if assembled.peft is not None:
            weights = trained_state(accelerator.unwrap_model(model))
    wall = time.perf_counter() - start
    return {
        **record_identity(config, seed, digest, "ok"),
        "data": {"name": dataset.name, "source": config.dataset, "fingerprint": dataset.fingerprint, "info": dataset.info,
                 "sizes": {role: task.num_examples(role) for role in ("train", "validation", "test")}},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(accelerator.device),
        "distributed": _distributed_info(config),
        "created": now_iso(),
        "parameters": {"trainable": trainable, "total": total},
        "tokenizer": {"source": config.baseline.tokenizer or WORD_LEVEL, "vocab_size": len(tokenizer),
                      "signature": tokenizers.signature(config.baseline.tokenizer), "used": "text" in model_cls.modalities},
        "image_transform": assembled.image_transform.signature() if assembled.image_transform is not None else None,
        "pretrained": describe_pretrained(config.baseline.pretrained),
        "peft": assembled.summary.as_record() if assembled.summary is not None else None,
        "features": features,
        "modalities": list(modalities),
        "timing": {"wall_seconds": wall, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
                   "train_examples_per_second": examples / train_seconds if train_seconds else None},
        "training": fit_info,
        "validation": {"metrics": validation.metrics} if validation is not None else {"primary": fit_info["best_validation"]},
        "test": {"metrics": test.metrics, "details": test.details},
        "per_example": {"test": test.per_example},
        "ablation": ablation,
        "_predictions": test.predictions,
        "_weights": weights,
    }
