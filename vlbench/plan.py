"""Planning runs: what was asked for (a request) -> the resolved runs, each with its record path and config hash.

Pure planning, no training: the CLI, the executors, the protocols and the runner all turn a request into
runs through these functions, so every path to a record computes the same identity for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

from vlbench import distributed
from vlbench.data.loading import split_dataset_arg
from vlbench.errors import SpecError, VLBenchError
from vlbench.models.pretrained import content_identities, missing_requirement
from vlbench.registry import MODELS
from vlbench.results.records import record_path
from vlbench.specs import BaselineSpec, RunConfig, TaskSpec, available_specs, config_hash, load_baseline_spec, resolve_run_config
from vlbench.peft.config import complete_peft
from vlbench.tasks.preflight import code_identity, complete_config
from vlbench.training.device import resolve_precision

__all__ = ["RunRequest", "PlannedRun", "select_baselines", "split_dataset_arg", "resolve_runs", "drop_unavailable",
           "run_digest", "planned_runs", "split_request_by_seed", "merge_outcomes", "subset_seed"]


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
class PlannedRun:
    """One (baseline, seed) of a request: its resolved config, where its record goes, and its config hash."""

    config: RunConfig
    seed: int
    path: Path
    digest: str


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


def drop_unavailable(configs: list[RunConfig], echo: Callable[[str], None]) -> list[RunConfig]:
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


def resolve_runs(request: RunRequest) -> list[RunConfig]:
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
        # checked against its task type and model type, every default written out (the hash reads this);
        # a bad peft block fails here, before any training
        source = f"baseline {spec.name!r}"
        configs.append(complete_config(config, source, complete_peft(config.baseline.peft, source)))
    for key, ok in applicable_somewhere.items():
        if not ok:
            models = ", ".join(sorted({s.model for s in request.baselines}))
            raise SpecError(f"--set {key}: no selected baseline's model type ({models}) has a setting {key.split('.')[2]!r}.")
    return configs


def run_digest(config: RunConfig, dataset: Any, device: Any) -> str:
    """A run's config hash: its config, the data it reads, the precision ``device`` runs, the number of processes."""
    extra: dict[str, Any] = {"data": dataset.fingerprint,  # the precision the device runs, not "auto"
                             "precision": resolve_precision(config.training.precision, device)}
    if distributed.world_size() > 1:  # more processes, a larger global batch: other numbers
        extra["world_size"] = distributed.world_size()
    extra["content"] = content_identities(config)  # pretrained files by what they hold, not where they lie
    task_code = code_identity(config)
    if task_code:  # e.g. how generated text is detokenized: a record made before a change is another run
        extra["task_code"] = task_code
    return config_hash(config, extra)


def planned_runs(request: RunRequest, configs: list[RunConfig], dataset: Any, device: Any) -> list[PlannedRun]:
    """Every (baseline, seed) of the request in run order, with its record path under ``request.results_dir``."""
    dataset_name = configs[0].dataset.partition(":")[0]  # one request reads one dataset
    runs = []
    for config in configs:
        digest = run_digest(config, dataset, device)
        seeds = request.seeds if request.seeds is not None else config.training.seeds
        for seed in seeds:
            path = record_path(request.results_dir, config.task.name, dataset_name, config.baseline.name, seed)
            runs.append(PlannedRun(config, seed, path, digest))
    return runs


def split_request_by_seed(request: Any, configs: list[Any], run: Callable[[Any], Any]) -> Optional[Any]:
    """Run a request once per seed when its train subset follows the run seed; None when one pass will do."""
    subset = configs[0].task.train_subset
    if subset is None or subset.seed is not None:
        return None
    seeds = request.seeds if request.seeds is not None else sorted({s for c in configs for s in c.training.seeds})
    if len(seeds) <= 1:
        return None
    return merge_outcomes([run(replace(request, seeds=[seed])) for seed in seeds])


def merge_outcomes(outcomes: list[Any]) -> Any:
    """One outcome listing what every part wrote, skipped, failed (every list field is concatenated)."""
    merged = outcomes[0]
    for other in outcomes[1:]:
        for f in fields(merged):
            if isinstance(getattr(merged, f.name), list):
                getattr(merged, f.name).extend(getattr(other, f.name))
    return merged


def subset_seed(request: Any, configs: list[Any]) -> int:
    """The one seed a request with a seed-following train subset runs under."""
    seeds = request.seeds if request.seeds is not None else sorted({s for c in configs for s in c.training.seeds})
    if len(seeds) != 1:
        raise VLBenchError("a train_subset that follows the run seed needs one seed per pass.")
    return seeds[0]
