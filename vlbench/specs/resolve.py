"""Resolving a task and a baseline (plus ``--set`` overrides and CLI flags) into one validated ``RunConfig``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vlbench.errors import SpecError
from vlbench.specs.overrides import apply_overrides, non_finite_path
from vlbench.specs.schema import BaselineSpec, RunConfig, TaskSpec, format_validation_error

__all__ = ["resolve_run_config", "default_tokenizer", "WORD_LEVEL"]

WORD_LEVEL = "word-level"  # the tokenizer built from a run's training text


def _reads_text(model_type: str) -> bool:
    from vlbench.registry import MODELS

    try:
        return "text" in MODELS.get(model_type).modalities
    except Exception:  # noqa: BLE001  an unregistered plugin type has no pretrained vocabulary to follow
        return False


def default_tokenizer(task: dict[str, Any], baseline: dict[str, Any]) -> str:
    """The tokenizer a baseline reads text with, from its (resolved) spec alone: never from what is installed.

    An explicit ``tokenizer:`` wins; a baseline with pretrained weights that reads text uses its pretrained
    model's own tokenizer (its embeddings were trained on that vocabulary); every other baseline uses the
    task's ``tokenizer:`` (default word-level, built from the training text).
    """
    if baseline.get("tokenizer"):
        return str(baseline["tokenizer"])
    if baseline.get("pretrained") and _reads_text(str(baseline.get("model", ""))):
        return str(baseline["pretrained"])
    return str(task.get("tokenizer") or WORD_LEVEL)


def resolve_run_config(
    task: TaskSpec,
    baseline: BaselineSpec,
    *,
    dataset: str | None = None,
    overrides: list[str] | None = None,
    training_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge task defaults, baseline overrides, ``--set`` and CLI flags into a validated RunConfig."""
    training = task.training.model_dump()
    training.update(baseline.training)
    task_raw = task.model_dump()
    if dataset is not None and dataset.partition(":")[0] != task.dataset.partition(":")[0]:
        # a spec's data options belong to its own dataset (e.g. shapes sizes); another dataset starts from none
        task_raw["data"] = {}
    raw = {
        "task": task_raw,
        "baseline": baseline.model_dump(),
        "training": training,
        "dataset": task.dataset if dataset is None else dataset,  # "" is refused by the name check, not replaced
    }
    raw = apply_overrides(raw, overrides or [])
    bad = non_finite_path({k: raw[k] for k in ("task", "baseline")})  # spec files may hold .nan / .inf too
    if bad:
        raise SpecError(f"resolved config of {task.name}/{baseline.name}: field {bad!r} is not a finite number; "
                        "settings take finite numbers.")
    if dataset is None and raw["dataset"] == task.dataset:
        raw["dataset"] = raw["task"].get("dataset", task.dataset)
    for key, value in (training_overrides or {}).items():
        if value is None:
            continue
        before = raw["training"].get(key)
        # a flag that sets a block (--robustness) keeps what --set or the spec said inside it
        raw["training"][key] = {**before, **value} if isinstance(value, dict) and isinstance(before, dict) else value
    if isinstance(raw.get("baseline"), dict) and isinstance(raw.get("task"), dict) and not raw["baseline"].get("tokenizer"):
        # the tokenizer is part of the config (and so of the hash): the same spec always reads text the same way
        raw["baseline"]["tokenizer"] = default_tokenizer(raw["task"], raw["baseline"])
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(f"resolved config of {task.name}/{baseline.name}", exc)) from exc
