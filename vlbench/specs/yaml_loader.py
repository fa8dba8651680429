"""A hardened YAML reader for specs and ``--set`` values: safe loader, bounded aliases and expansion, no duplicate keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vlbench.errors import SpecError

__all__ = ["load_yaml", "read_spec_file", "MAX_SPEC_BYTES", "MAX_YAML_ALIASES", "MAX_YAML_NODES"]

MAX_SPEC_BYTES = 1_000_000
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000  # after aliases are expanded: a spec is a few hundred nodes


class _Unbounded(yaml.YAMLError):
    """YAML that is valid but would take unbounded work to expand."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded aliases (no 'billion laughs') and no duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Unbounded(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: D102
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen and key != "<<":
                raise yaml.YAMLError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads `1e-2` and `1.0e3` as strings; YAML 1.2, and every user, reads them as numbers. The
# resolver is appended, so integers and the YAML 1.1 floats still resolve as before.
_YAML12_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+.0123456789"))


def _expanded_size(value: Any, limit: int) -> int:
    """Number of nodes once aliases are expanded, counting no further than ``limit``."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely: aliases bounded, expansion bounded, nesting bounded; errors are SpecError lines."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506  (_SpecLoader is a SafeLoader)
    except RecursionError:
        raise SpecError(f"{source}: YAML nested too deeply to read; flatten it.") from None
    except _Unbounded as exc:
        raise SpecError(f"{source}: YAML with {exc}.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{where} broken YAML: {problem}") from None
    if _expanded_size(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise SpecError(f"{source}: YAML expands to more than {MAX_YAML_NODES} values (aliases?); write it out plainly.")
    return data


def read_spec_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in a spec file (size-capped, UTF-8); any problem is one SpecError line."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: {size} bytes is too large for a spec (limit {MAX_SPEC_BYTES}).")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: a spec must be UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping, got {type(data).__name__}.")
    return data
