"""The command that made a set of records, rebuilt from what the records hold.

Records store their resolved config, not the command line. The command is rebuilt from it: the task,
the baseline, the seeds, every training field that differs from the task's and baseline's defaults as
recorded in the same config (``--epochs`` and friends, the switches ``--emap``, ``--check-eval-invariance`` and
``--keep-model`` for the measurements the record holds, or ``--set training.<field>``), the training
subset (``--train-fraction`` / ``--k-shot``), baseline settings that differ from the shipped spec of
that name (``--set baseline.config.<key>``), and the results folder the records sit in. A baseline that
is no shipped spec was given as a YAML file: the command names it ``<name>.yaml``, and its content is
the record's ``config.baseline``. Task settings that differ from the shipped task spec (``--set
task.data.val_images=100``, ``--set task.options.<key>``) are rebuilt too. Records hold their settings with
every default filled in, so each side is compared after its type's defaults fill the shipped spec: a
setting the shipped file leaves out but the command set still shows.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

__all__ = ["run_command", "run_commands", "continual_command", "results_dir_of"]

_FLAGS = {"epochs": "--epochs", "max_steps": "--max-steps", "min_steps": "--min-steps", "batch_size": "--batch-size",
          "lr": "--lr", "precision": "--precision"}
_CONTINUAL_FLAGS = {k: v for k, v in _FLAGS.items() if k != "min_steps"}
# measurements `vlbench run` asks for with a switch of its own (`vlbench continual` has none of them)
_RUN_SWITCHES = ("emap_items", "check_eval_invariance", "keep_model")


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _training_options(record: dict[str, Any], flags: dict[str, str], switches: Sequence[str] = ()) -> list[str]:
    """Options for the training fields that differ from the recorded task + baseline defaults (the fields in
    ``switches`` as the command's switch for them)."""
    config = record.get("config") or {}
    defaults = dict((config.get("task") or {}).get("training") or {})
    defaults.update((config.get("baseline") or {}).get("training") or {})
    used = config.get("training") or {}
    out: list[str] = []
    for key in sorted(used):
        if key == "seeds" or key not in defaults or used[key] == defaults[key]:
            continue
        switch = _switch(key, used[key]) if key in switches else None
        if switch is not None:
            out += switch
        else:
            out += [flags[key], _value(used[key])] if key in flags else ["--set", f"training.{key}={_value(used[key])}"]
    return out


def _switch(key: str, value: Any) -> Optional[list[str]]:
    """The `vlbench run` switch that asks for a measurement the record holds (EMAP, the invariance check, kept
    weights), as a user would type it; None for other settings."""
    from vlbench.specs import DEFAULT_EMAP_ITEMS

    if key == "emap_items" and isinstance(value, int):
        return ["--emap"] if value == DEFAULT_EMAP_ITEMS else ["--emap-items", str(value)]
    if key in ("check_eval_invariance", "keep_model") and value is True:
        return ["--" + key.replace("_", "-")]
    return None


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _filled(settings: Any, block: Any) -> Any:
    """``block`` with the defaults of ``settings`` (a task type's Options or a model type's Config) filled in."""
    if settings is None or not isinstance(block, dict):
        return block
    try:
        return settings.model_validate(block).model_dump(mode="json")
    except ValueError:  # a shipped spec that no longer validates: compare what it says
        return block


def _registered(registry: Any, name: Any, attribute: str) -> Any:
    try:
        return getattr(registry.get(str(name)), attribute, None)
    except Exception:  # noqa: BLE001  an unregistered plugin type: its settings cannot be filled
        return None


def _differing(section: str, mine: Any, theirs: Any, named_only: bool = False) -> list[str]:
    """``--set`` options for the settings under ``section`` that the record holds and the shipped spec does not.

    ``named_only``: only settings the shipped spec names (for a block the record holds completed by a layer
    above this one, whose defaults cannot be filled in here)."""
    flat_mine: dict[str, Any] = {}
    flat_theirs: dict[str, Any] = {}
    _flatten(section, mine, flat_mine)
    _flatten(section, theirs, flat_theirs)
    out: list[str] = []
    for key in sorted(flat_mine):
        value = flat_mine[key]
        if key in flat_theirs and value == flat_theirs[key]:
            continue
        if value == {} or (named_only and key not in flat_theirs):
            continue
        if key not in flat_theirs and value is None:
            continue  # an optional setting left unset on both sides (the shipped file only omits it)
        out += ["--set", f"{key}={_value(value)}"]
    return out


_TASK_SECTIONS = ("data", "options", "prompt", "splits", "primary_metric", "reference_baseline", "tokenizer")


def _task_options(record: dict[str, Any]) -> list[str]:
    """``--set task.<key>=...`` for the task settings that differ from the shipped task spec of that name."""
    from vlbench.registry import TASK_TYPES

    task = (record.get("config") or {}).get("task") or {}
    shipped = _shipped("tasks", str(task.get("name") or record.get("task")))
    if shipped is None:
        return []
    options = _registered(TASK_TYPES, task.get("type"), "Options")
    out: list[str] = []
    for section in _TASK_SECTIONS:
        mine, theirs = task.get(section), shipped.get(section)
        if section == "options":
            mine, theirs = _filled(options, mine), _filled(options, theirs)
        out += _differing(f"task.{section}", mine, theirs)
    return out


def _shipped(kind: str, name: str) -> Optional[dict[str, Any]]:
    """The shipped spec of that kind ("tasks" or "baselines") and name (names only, never a path from a
    record), as a dict; None if none."""
    from vlbench.errors import VLBenchError
    from vlbench.specs import available_specs, load_baseline_spec, load_task_spec

    if name not in available_specs(kind):
        return None
    try:
        return (load_task_spec if kind == "tasks" else load_baseline_spec)(name).model_dump(mode="json")
    except (VLBenchError, OSError, ValueError):
        return None


def _baseline_options(record: dict[str, Any]) -> tuple[str, list[str]]:
    """The --baseline argument and the --set options of baseline settings that differ from the shipped spec."""
    baseline = (record.get("config") or {}).get("baseline") or {}
    name = str(record.get("baseline"))
    shipped = _shipped("baselines", name)
    if shipped is None:
        return f"{name}.yaml", []
    from vlbench.registry import MODELS

    settings = _registered(MODELS, baseline.get("model") or shipped.get("model"), "Config")
    config = _differing("baseline.config", _filled(settings, baseline.get("config")),
                        _filled(settings, shipped.get("config")))
    # the peft block is completed by the peft package (a layer above this one): settings the shipped file names
    return name, config + _differing("baseline.peft", baseline.get("peft"), shipped.get("peft"), named_only=True)


def results_dir_of(record: dict[str, Any], depth: int = 4) -> Optional[str]:
    """The folder given as --results-dir: the record's path less task/dataset/baseline/seed (``depth`` parts)."""
    path = record.get("_path")
    if not path:
        return None
    folder = Path(path).parents[depth - 1]
    subset = ((record.get("config") or {}).get("task") or {}).get("train_subset") or {}
    if (subset.get("fraction") is not None and folder.name.startswith("fraction-")) or \
            (subset.get("k_shot") is not None and folder.name.startswith("k-shot-")):
        folder = folder.parent  # --train-fraction / --k-shot write each size in its own subfolder
    return str(folder)


def _seeds(records: Iterable[dict[str, Any]]) -> str:
    return ",".join(str(s) for s in sorted({int(r["seed"]) for r in records}))


def run_command(records: Sequence[dict[str, Any]]) -> str:
    """``vlbench run ...`` for one system's records (the first record's config; seeds from all)."""
    first = records[0]
    config = first.get("config") or {}
    baseline, baseline_sets = _baseline_options(first)
    args = ["vlbench", "run", "--task", str(first.get("task")), "--baseline", baseline]
    task_dataset = (config.get("task") or {}).get("dataset")
    if config.get("dataset") and config.get("dataset") != task_dataset:
        args += ["--dataset", str(config["dataset"])]
    args += ["--seeds", _seeds(records)] + _training_options(first, _FLAGS, _RUN_SWITCHES) + _task_options(first) + baseline_sets
    subset = (config.get("task") or {}).get("train_subset") or {}
    if subset.get("fraction") is not None:
        args += ["--train-fraction", _value(subset["fraction"])]
    if subset.get("k_shot") is not None:
        args += ["--k-shot", _value(subset["k_shot"])]
    folder = results_dir_of(first)
    if folder:
        args += ["--results-dir", folder]
    return shlex.join(args)


def run_commands(groups: Iterable[Sequence[dict[str, Any]]]) -> list[str]:
    """One command per system, systems whose commands differ only in the baseline merged into one line."""
    merged: dict[str, list[str]] = {}
    for records in groups:
        line = shlex.split(run_command(records))
        at = line.index("--baseline")
        rest = line[:at] + line[at + 2:]
        merged.setdefault(shlex.join(rest), [])
        if line[at + 1] not in merged[shlex.join(rest)]:
            merged[shlex.join(rest)].append(line[at + 1])
    out = []
    for rest, baselines in merged.items():
        words = shlex.split(rest)
        at = words.index("--task") + 2
        words[at:at] = [w for b in baselines for w in ("--baseline", b)]
        out.append(shlex.join(words))
    return sorted(out)


def continual_command(summaries: Sequence[dict[str, Any]], stage_records: Sequence[dict[str, Any]]) -> str:
    """``vlbench continual ...`` for one baseline and strategy: its summaries (one per seed) and a stage record."""
    first = summaries[0]
    args = ["vlbench", "continual", "--sequence", str(first.get("sequence")), "--baseline", str(first.get("baseline")),
            "--strategy", str(first.get("strategy")), "--seeds", _seeds(summaries)]
    for key, value in sorted((first.get("settings") or {}).items()):
        if value is not None:
            args += [f"--{key.replace('_', '-')}", _value(value)]
    if stage_records:
        record = stage_records[0]
        args += _training_options(record, _CONTINUAL_FLAGS)
        folder = results_dir_of(record, depth=7)  # .../<sequence>/<strategy>/<stage>/task/dataset/baseline/seed
        if folder:
            args += ["--results-dir", folder]
    return shlex.join(args)
