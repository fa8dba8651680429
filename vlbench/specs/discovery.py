"""Where specs are found (packaged, source checkout, plugin folders) and loading one by name or path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlbench.errors import SpecError, UnknownNameError
from vlbench.registry import did_you_mean
from vlbench.specs.schema import BaselineSpec, TaskSpec, format_validation_error
from vlbench.specs.yaml_loader import read_spec_file

__all__ = ["spec_dirs", "add_spec_dir", "available_specs", "load_task_spec", "load_baseline_spec"]

# the vlbench package folder: packaged specs live in vlbench/_specs, a source checkout's beside vlbench/
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_EXTRA_DIRS: dict[str, list[Path]] = {"tasks": [], "baselines": []}


def spec_dirs(kind: str) -> list[Path]:
    """Folders searched for ``kind`` ("tasks" or "baselines") specs: packaged, source checkout, plugins."""
    dirs = []
    packaged = _PACKAGE_DIR / "_specs" / kind
    source = _PACKAGE_DIR.parent / kind
    for candidate in (packaged, source):
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs + [d for d in _EXTRA_DIRS[kind] if d not in dirs]


def add_spec_dir(kind: str, path: str | Path) -> None:
    """Let a plugin ship its own ``tasks`` or ``baselines`` spec folder."""
    if kind not in _EXTRA_DIRS:
        raise SpecError(f"Unknown spec kind {kind!r}; use 'tasks' or 'baselines'.")
    resolved = Path(path).resolve()
    if resolved not in _EXTRA_DIRS[kind]:
        _EXTRA_DIRS[kind].append(resolved)


def available_specs(kind: str) -> dict[str, Path]:
    """Spec name -> file, for every YAML file in the spec folders (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in spec_dirs(kind):
        for path in sorted(folder.glob("*.y*ml")):
            found.setdefault(path.stem, path)
    return found


def _locate(kind: str, name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise SpecError(f"Spec file {name_or_path!r} does not exist.")
        return candidate
    specs = available_specs(kind)
    if name_or_path not in specs:
        singular = kind[:-1]
        raise UnknownNameError(
            f"Unknown {singular} {name_or_path!r}.{did_you_mean(name_or_path, sorted(specs))} "
            f"Known: {', '.join(sorted(specs)) or 'none'} (see `vlbench list {kind}`)."
        )
    return specs[name_or_path]


def _load_spec(kind: str, schema: type[TaskSpec] | type[BaselineSpec], name_or_path: str) -> Any:
    path = _locate(kind, name_or_path)
    data = read_spec_file(path)
    data.setdefault("name", path.stem)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(str(path), exc)) from exc


def load_task_spec(name_or_path: str) -> TaskSpec:
    """Load and validate a task spec by name or YAML path."""
    return _load_spec("tasks", TaskSpec, name_or_path)


def load_baseline_spec(name_or_path: str) -> BaselineSpec:
    """Load and validate a baseline spec by name or YAML path."""
    return _load_spec("baselines", BaselineSpec, name_or_path)
