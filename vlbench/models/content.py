"""Pretrained weights identified by what they hold, not by where they lie.

A run's identity (its config hash) and a frozen backbone's feature cache must change when the weights do,
and only then. A local file is identified by its sha256; a local model folder (``save_pretrained``, a hub
snapshot copied by hand) by the digests of the files ``from_pretrained`` reads from it (weights, config,
tokenizer, processor); a hub id by the commit its files resolve to. Digests are computed once per process
for each (file, size, modification time).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from vlbench.errors import VLBenchError
from vlbench.models.wheel_weights import file_sha256

__all__ = ["WEIGHTS_FILE", "MODEL_FILE_SUFFIXES", "file_digest", "folder_identity", "local_identity", "hub_identity"]

# what from_pretrained reads from a model folder: weights, configs, vocabularies and tokenizer models, remote code
MODEL_FILE_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".npz",
                                 ".json", ".txt", ".model", ".tiktoken", ".py"})
_DOCS = ("readme", "license", "licence", "notice")
# marks a model setting that names a local weights file (``Field(json_schema_extra=WEIGHTS_FILE)``): a run's
# identity then holds the file's digest instead of its path
WEIGHTS_FILE = {"weights_file": True}


def file_digest(path: Path) -> str:
    """The sha256 of a file (computed once per process for each path, size and modification time)."""
    try:
        return file_sha256(Path(path))
    except OSError as exc:
        raise VLBenchError(f"cannot read {str(path)!r} to identify the weights: {exc.strerror or exc}") from None


def _model_files(folder: Path) -> list[Path]:
    """The files of a model folder that decide what loads from it (top level; docs and hidden files left out)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise VLBenchError(f"cannot list {str(folder)!r} to identify the weights: {exc.strerror or exc}") from None
    return [p for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MODEL_FILE_SUFFIXES
            and not p.stem.lower().startswith(_DOCS)]


def folder_identity(folder: Path) -> str:
    """``sha256:<hex>`` over the names and digests of a model folder's files (its path is not part of it)."""
    files = _model_files(Path(folder))
    if not files:
        raise VLBenchError(f"pretrained folder {str(folder)!r} holds no model files (config.json, weights); point "
                           "`pretrained:` at a folder written by save_pretrained or a hub snapshot.")
    listing = "\n".join(f"{p.name} {file_digest(p)}" for p in files)
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def local_identity(path: Path) -> str:
    """The content identity of a local weights file or model folder."""
    path = Path(path)
    return folder_identity(path) if path.is_dir() else "sha256:" + file_digest(path)


def _cached_revision(repo_id: str) -> str | None:
    """The commit of ``repo_id`` in the local Hugging Face cache (the snapshot folder its files resolve to)."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        try:
            found = try_to_load_from_cache(repo_id, name)
        except Exception:  # noqa: BLE001  not a valid repo id: nothing cached under it
            return None
        if isinstance(found, str):
            return Path(found).parent.name  # <cache>/models--org--name/snapshots/<commit>/<file>
    return None


@lru_cache(maxsize=None)
def hub_identity(repo_id: str) -> str:
    """``hub:<repo>@<commit>``: the revision ``from_pretrained`` loads now (the hub's when online, else the cache's)."""
    import huggingface_hub.constants

    revision = None
    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            revision = HfApi().model_info(repo_id, timeout=10).sha
        except Exception:  # noqa: BLE001  unreachable hub: from_pretrained falls back to the cache as well
            revision = None
    revision = revision or _cached_revision(repo_id)
    if not revision:
        raise VLBenchError(
            f"pretrained {repo_id!r}: cannot tell which revision would load (not a local folder, not in the Hugging "
            f"Face cache, and the hub did not answer); download it with `huggingface-cli download {repo_id} "
            "--local-dir DIR` and pass --set baseline.pretrained=DIR."
        )
    return f"hub:{repo_id}@{revision}"
