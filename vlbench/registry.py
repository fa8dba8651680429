"""One generic registry type, four registries (tasks, models, datasets, metrics) and plugin loading.

Entries are either the registered object itself or a lazy ``"module:attr"`` string that is imported on
first use, so that listing names never imports heavy optional dependencies.

Each name is registered once, one of two ways by who owns it: vlbench's own types are the lazy lines of
one manifest, ``vlbench.builtins``, which the four registries import themselves on first use (so no
module has to import it for lookups to work); third-party code (entry-point plugins, ``--plugin`` files)
uses the decorators ``register_task``, ``register_model``, ``register_dataset``, ``register_metric``.
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
    "take_notices",
    "load_plugins",
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

    def __init__(self, kind: str, manifest: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}
        # module whose import registers the built-in entries; imported (by name, so that this module
        # depends on nothing above it) before the first lookup, listing or registration
        self._manifest = manifest

    def _load_manifest(self) -> None:
        manifest, self._manifest = self._manifest, None  # cleared first: the manifest's own add() calls land here
        if manifest is None:
            return
        try:
            importlib.import_module(manifest)
        except BaseException:
            self._manifest = manifest
            raise

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
        """Register ``target`` (an object or a lazy ``"module:attr"`` string) under ``name``.

        Replacing a registered name needs ``override=True`` and is announced (see ``take_notices``),
        so that a plugin never silently changes what a built-in name means.
        """
        self._load_manifest()  # a plugin registering a built-in name must meet the built-in entry
        existing = self._entries.get(name)
        if existing is not None and _same_target(existing.target, target):
            return  # the entry already names this very object: nothing changes
        if existing is not None:
            if not override:
                raise VLBenchError(
                    f"{self.kind} {name!r} is already registered ({_describe(existing.target)}); "
                    "choose another name, or pass override=True to replace it."
                )
            _NOTICES.append(f"{self.kind} {name!r} ({_describe(existing.target)}) is replaced by {_describe(target)}")
        self._entries[name] = RegistryEntry(name, target, description, dict(metadata))

    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for ``name``; an unknown name raises with a did-you-mean hint."""
        self._load_manifest()
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
        self._load_manifest()
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry[T]]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._load_manifest()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_manifest()
        return len(self._entries)


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"


def _same_target(registered: Any, target: Any) -> bool:
    """Whether ``target`` is what ``registered`` already names: the same object, or a lazy pointer to it."""
    if registered is target:
        return True
    if isinstance(registered, str):  # a lazy pointer names an object by module:qualname, never a copy of it
        return registered == (target if isinstance(target, str) else _describe(target))
    return isinstance(target, str) and target == _describe(registered)


_NOTICES: list[str] = []


def take_notices() -> list[str]:
    """Messages about replaced registrations since the last call (the CLI prints them)."""
    notices = list(_NOTICES)
    _NOTICES.clear()
    return notices


BUILTINS_MANIFEST = "vlbench.builtins"

TASK_TYPES: Registry[Any] = Registry("task type", manifest=BUILTINS_MANIFEST)
MODELS: Registry[Any] = Registry("model type", manifest=BUILTINS_MANIFEST)
DATASETS: Registry[Any] = Registry("dataset", manifest=BUILTINS_MANIFEST)
METRICS: Registry[Any] = Registry("metric", manifest=BUILTINS_MANIFEST)

register_task = TASK_TYPES.register
register_model = MODELS.register
register_dataset = DATASETS.register
register_metric = METRICS.register

_loaded_plugins: set[str] = set()


def _plugin_failure(what: str, exc: BaseException) -> VLBenchError:
    if isinstance(exc, SystemExit):
        return VLBenchError(f"{what} called sys.exit({exc.code!r}) while loading; a plugin must only register types.")
    return VLBenchError(f"{what} failed to load: {type(exc).__name__}: {exc}")


def load_entry_point_plugins() -> list[str]:
    """Import every module advertised in the ``vlbench.plugins`` entry-point group; returns their names."""
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        key = f"ep:{ep.name}:{ep.value}"
        if key in _loaded_plugins:
            continue
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except VLBenchError:
            raise
        # BaseException: a plugin raising KeyboardInterrupt, GeneratorExit or its own BaseException subclass
        # must not pass for the user's Ctrl-C (exit 130) or escape as a traceback; it is the plugin's failure
        except BaseException as exc:  # noqa: BLE001
            raise _plugin_failure(f"Plugin {ep.name!r} ({ep.value})", exc) from exc
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
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:  # noqa: BLE001  as for entry points: SystemExit, Ctrl-C-like or custom, it is the plugin's
        sys.modules.pop(module_name, None)
        raise _plugin_failure(f"Plugin file {str(path)!r}", exc) from exc
    _loaded_plugins.add(key)
    return module_name


def load_plugins(plugin_files: list[str] | None = None, warn: Callable[[str], None] | None = None) -> None:
    """Load entry-point plugins and plugin files (the registries load the built-ins); ``warn`` hears of replaced names."""
    load_entry_point_plugins()
    for path in plugin_files or []:
        load_plugin_file(path)
    for notice in take_notices():  # a plugin replaced a registered name on purpose (override=True): say so
        if warn is None:
            print(f"warning: {notice}", file=sys.stderr)
        else:
            warn(notice)
