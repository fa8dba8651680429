"""Integrity of dataset caches: per-file content hashes written at build time, verified on every load, and a lock.

A cache folder holds ``manifest.json``: the size and SHA-256 of every other file in it. Loading checks
every file against it (a few hundred MB/s, so a 100 MB cache costs well under a second), which catches
edits that keep file sizes (a renamed answer, zeroed pixels) as well as truncation. The content
fingerprint of a cache is a hash over its data files' hashes, so records name the bytes they used.
One file lock per cache folder lets a single process build while the others wait and then reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from vlbench.errors import DataError

__all__ = ["MANIFEST", "file_sha256", "write_manifest", "verify_manifest", "content_fingerprint", "build_lock",
           "source_fingerprint"]

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.endswith(".lock"))


def write_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Hash every file under ``folder`` into ``folder/manifest.json``; returns the manifest."""
    from vlbench.io import atomic_write_json

    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in _files(folder)}
    manifest = {"version": 1, "algorithm": "sha256", "files": files}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: str | os.PathLike, label: str, hint: str, full: bool = True) -> dict[str, Any]:
    """Check every file of ``folder`` against its manifest (sizes only unless ``full``); a mismatch is one DataError."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{label}: cache {str(folder)!r} has no readable {MANIFEST} ({type(exc).__name__}). {hint}") from None
    for rel, expected in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            raise DataError(f"{label}: cache file {str(path)!r} is missing. {hint}")
        if path.stat().st_size != expected["size"] or full and file_sha256(path) != expected["sha256"]:
            raise DataError(f"{label}: cache file {str(path)!r} does not match the hash written when it was built "
                            f"(changed or corrupted). {hint}")
    extra = [p.relative_to(folder).as_posix() for p in _files(folder) if p.relative_to(folder).as_posix() not in files]
    if extra:
        raise DataError(f"{label}: cache {str(folder)!r} has file(s) not written by its build: {', '.join(extra[:3])}. {hint}")
    return manifest


def content_fingerprint(manifest: dict[str, Any], suffixes: Iterable[str] = (".arrow",)) -> str:
    """16-hex hash over the data files' hashes (the bytes a run reads, not the options that made them)."""
    suffixes = tuple(suffixes)
    items = sorted((rel, meta["sha256"]) for rel, meta in manifest["files"].items() if rel.endswith(suffixes))
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()[:16]


def source_fingerprint(payload: Any) -> str:
    """16-hex hash of a JSON-able description of a dataset's sources (file hashes, image list, options)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextmanager
def build_lock(folder: str | os.PathLike, timeout: float = -1) -> Iterator[None]:
    """Hold ``<cache root>/.locks/<kind>-<key>.lock`` while building or checking ``folder``; others wait."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    locks = folder.parent.parent / ".locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache folder {str(locks)!r}: {exc.strerror or exc}; pass --cache-dir "
                        "or set VLBENCH_CACHE.") from exc
    lock = FileLock(str(locks / f"{folder.parent.name}-{folder.name}.lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise DataError(f"another process holds the build lock of {str(folder)!r}; try again later.") from None
