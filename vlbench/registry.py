"""One generic registry type, four registries (tasks, models, datasets, metrics) and plugin loading.

Entries are either the registered object itself or a lazy ``"module:attr"`` string that is imported on
first use, so that listing names never imports heavy optional dependencies.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from vlbench.errors import UnknownNameError, VLBenchError

__all__ = [
    "Registry",
    "RegistryEntry",
    "TASK_TYPES",
    "MODELS",
    "DATASETS",
    "METRICS",
    "register_task",
    "register_model",
    "register_dataset",
    "register_metric",
    "did_you_mean",
    "load_entry_point_plugins",
    "load_plugin_file",
    "PLUGIN_GROUP",
]

T = TypeVar("T")
PLUGIN_GROUP = "vlbench.plugins"


def did_you_mean(name: str, choices: list[str]) -> str:
    """A ' Did you mean ...?' suffix naming the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if not close:
        lowered = [c for c in choices if name.lower() in c.lower() or c.lower() in name.lower()]
        close = lowered[:3]
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


@dataclass
class RegistryEntry(Generic[T]):
    """A registered object (or its lazy import path) with a one-line description."""

    name: str
    target: T | str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        """Return the object, importing it first when it was registered lazily."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            module = importlib.import_module(module_name)
            self.target = getattr(module, attr)
        return self.target  # type: ignore[return-value]


class Registry(Generic[T]):
    """Name -> object mapping with decorator registration and did-you-mean lookups."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}

    def register(
        self, name: str | None = None, *, description: str = "", override: bool = False, **metadata: Any
    ) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            doc = description or (getattr(obj, "__doc__", "") or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self.add(key, obj, description=text, override=override, **metadata)
            return obj

        return decorator

    def add(self, name: str, target: T | str, *, description: str = "", override: bool = False, **metadata: Any) -> None:
        """Register ``target`` (an object or a lazy ``"module:attr"`` string) under ``name``."""
        existing = self._entries.get(name)
        if existing is not None and isinstance(target, str) and not isinstance(existing.target, str):
            return  # the real object registered first; a later lazy pointer to it adds nothing
        # a lazy "module:attr" entry is replaced by the object once its module registers it
        lazy = existing is not None and isinstance(existing.target, str) and not isinstance(target, str)
        if existing is not None and not override and not lazy and existing.target is not target:
            raise VLBenchError(f"{self.kind} {name!r} is already registered; pass override=True to replace it.")
        if lazy and existing is not None:
            description = description or existing.description
            metadata = {**existing.metadata, **metadata}
        self._entries[name] = RegistryEntry(name, target, description, dict(metadata))

    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for ``name``; an unknown name raises with a did-you-mean hint."""
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, known)} Known: {', '.join(known) or 'none'}."
            ) from None

    def get(self, name: str) -> T:
        """The registered object for ``name``."""
        return self.entry(name).load()

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry[T]]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


TASK_TYPES: Registry[Any] = Registry("task type")
MODELS: Registry[Any] = Registry("model type")
DATASETS: Registry[Any] = Registry("dataset")
METRICS: Registry[Any] = Registry("metric")

register_task = TASK_TYPES.register
register_model = MODELS.register
register_dataset = DATASETS.register
register_metric = METRICS.register

_loaded_plugins: set[str] = set()


def load_entry_point_plugins() -> list[str]:
    """Import every module advertised in the ``vlbench.plugins`` entry-point group; returns their names."""
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        key = f"ep:{ep.name}:{ep.value}"
        if key in _loaded_plugins:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide which one it was
            raise VLBenchError(f"Plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from exc
        if callable(obj) and not isinstance(obj, type):
            obj()
        _loaded_plugins.add(key)
        loaded.append(ep.name)
    return loaded


def load_plugin_file(path: str | Path) -> str:
    """Import a plugin from a Python file path (``--plugin path/to/module.py``); returns its module name."""
    path = Path(path)
    if not path.is_file():
        raise VLBenchError(f"Plugin file {str(path)!r} does not exist; pass the path of a .py module.")
    key = f"file:{path.resolve()}"
    module_name = f"vlbench_plugin_{path.stem}"
    if key in _loaded_plugins:
        return module_name
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise VLBenchError(f"Plugin file {str(path)!r} is not an importable Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except VLBenchError:
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise VLBenchError(f"Plugin file {str(path)!r} failed to import: {type(exc).__name__}: {exc}") from exc
    _loaded_plugins.add(key)
    return module_name
