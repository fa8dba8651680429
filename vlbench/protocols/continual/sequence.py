"""Continual sequences (YAML): a task, optional overrides, and stages that each select rows of its table.

A stage keeps, in every split, the rows whose columns take one of the listed values (``where:``), so the
stages are disjoint streams over one dataset, with one label space and one tokenizer shared by all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlbench.data.base import VLDataset
from vlbench.errors import DataError, SpecError
from vlbench.data.views import DatasetView
from vlbench.registry import did_you_mean
from vlbench.specs import format_validation_error

__all__ = ["Stage", "ContinualSequence", "shipped_sequences", "load_sequence", "stage_view"]

_SHIPPED = Path(__file__).resolve().parent.parent / "sequences"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Stage(_Strict):
    """One stage: a name and the column values its rows have."""

    name: str = Field(min_length=1)
    where: dict[str, list[Any]] = Field(min_length=1)


class ContinualSequence(_Strict):
    """A task and the stages one model learns in order."""

    name: str
    description: str = ""
    task: str
    set: list[str] = Field(default_factory=list, description="--set overrides applied to every run of the sequence")
    stages: list[Stage] = Field(min_length=1)

    @field_validator("stages")
    @classmethod
    def _distinct(cls, stages: list[Stage]) -> list[Stage]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be distinct")
        return stages


def shipped_sequences() -> dict[str, Path]:
    """Name -> file of the sequences that ship with vlbench."""
    return {p.stem: p for p in sorted(_SHIPPED.glob("*.y*ml"))}


def load_sequence(name_or_path: str) -> ContinualSequence:
    """A shipped sequence by name, or a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        shipped = shipped_sequences()
        if name_or_path not in shipped:
            raise SpecError(f"Unknown sequence {name_or_path!r}.{did_you_mean(name_or_path, sorted(shipped))} "
                            f"Known: {', '.join(sorted(shipped))}; or pass a YAML file.")
        path = shipped[name_or_path]
    if not path.is_file():
        raise SpecError(f"Sequence file {str(path)!r} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: broken YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a sequence must be a YAML mapping.")
    data.setdefault("name", path.stem)
    try:
        return ContinualSequence.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(str(path), exc)) from exc


def _matcher(stages: list[Stage], label: str):
    def select(kind: str, split: str, rows: Any) -> tuple[list[int], dict[str, Any]]:
        columns = sorted({c for s in stages for c in s.where})
        missing = [c for c in columns if c not in rows.column_names]
        if missing:
            raise DataError(f"stage {label!r}: table {kind!r} split {split!r} has no column {missing[0]!r} "
                            f"(it has: {', '.join(rows.column_names)}).")
        data = rows.select_columns(columns).to_dict()
        wanted = [{c: set(v) for c, v in s.where.items()} for s in stages]
        keep = [r for r in range(len(rows)) if any(all(data[c][r] in vals for c, vals in w.items()) for w in wanted)]
        if not keep:
            raise DataError(f"stage {label!r} selects no rows of table {kind!r} split {split!r}; check its where: values.")
        return keep, {"stages": [s.name for s in stages], "examples": len(keep), "examples_total": len(rows)}

    return select


def stage_view(dataset: VLDataset, stages: list[Stage], split_names: list[str], label: str) -> VLDataset:
    """The dataset narrowed, in every named split, to the rows of the given stages (one, or all for joint)."""
    select = _matcher(stages, label)
    return DatasetView(dataset, {name: select for name in split_names}, "stage")
