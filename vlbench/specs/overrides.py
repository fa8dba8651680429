"""The ``--set key.path=value`` override grammar: parsing one override and applying a list to a config tree."""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

from vlbench.errors import SpecError
from vlbench.registry import did_you_mean
from vlbench.specs.yaml_loader import load_yaml

__all__ = ["parse_override", "apply_overrides", "non_finite_path"]


def non_finite_path(value: Any, prefix: str = "") -> Optional[str]:
    """The dotted path of the first NaN or infinity inside ``value`` (mappings and lists included), else None."""
    stack = [(prefix, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "(the value)"
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as YAML (numbers, booleans, lists, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {text!r}: expected key.path=value, e.g. --set baseline.config.hidden_size=64.")
    path = key.split(".")
    if any(not part.strip() for part in path):
        raise SpecError(f"--set {text!r}: the key {key!r} has an empty part; write it like training.epochs.")
    if len(raw) > 100_000:
        raise SpecError(f"--set {key}=...: the value is {len(raw)} characters long; put large settings in a spec file.")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except SpecError as exc:
        if "broken YAML" not in str(exc):
            raise  # an alias bomb or deep nesting is refused, not read as a string
        value = raw
    bad = non_finite_path(value, key)
    if bad:  # no setting takes NaN or infinity; json and the config hash would fail on them later
        raise SpecError(f"--set {key}=...: {bad} is not a finite number; settings take finite numbers.")
    return path, value


def _set_path(tree: dict[str, Any], path: list[str], value: Any, original: str) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise SpecError(f"--set {original}: {'.'.join(path[:i])!r} is not a mapping.")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise SpecError(f"--set {original}: {'.'.join(path[:-1])!r} is not a mapping.")
    node[path[-1]] = value


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of a resolved config dict with ``--set`` overrides applied (validated later)."""
    result = copy.deepcopy(config)
    roots = sorted(result)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "data" and "data" not in result and "task" in result:
            path = ["task", *path]  # `vlbench data` spells dataset options data.KEY; here they live in task.data
        if path[0] not in result:
            raise SpecError(
                f"--set {text}: unknown root {path[0]!r}.{did_you_mean(path[0], roots)} "
                f"Keys start with one of: {', '.join(roots)}."
            )
        if len(path) == 1:
            if isinstance(result[path[0]], dict) and not isinstance(value, dict):
                example = next(iter(result[path[0]]), "KEY")
                raise SpecError(
                    f"--set {text}: {path[0]!r} is a group of settings, not a value; set one of them, "
                    f"e.g. --set {path[0]}.{example}=..."
                )
            result[path[0]] = value
        else:
            _set_path(result, path, value, text)
    return result

