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
from typing import Any, Iterable, Iterator, Optional

from vlbench.errors import DataError

__all__ = ["MANIFEST", "file_sha256", "manifest_entry", "manifest_of", "write_manifest", "manifest_problem",
           "verify_manifest", "content_fingerprint", "build_lock",
           "source_fingerprint"]

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_MAX_MANIFEST = 64 << 20  # a manifest names files, it never holds their data


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.endswith(".lock"))


def manifest_entry(data: bytes) -> dict[str, Any]:
    """The manifest entry of a file holding ``data``: its size and SHA-256."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_of(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A manifest naming ``files`` (relative path -> :func:`manifest_entry`)."""
    return {"version": 1, "algorithm": "sha256", "files": files}


def write_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Hash every file under ``folder`` into ``folder/manifest.json``; returns the manifest."""
    from vlbench.io import atomic_write_json

    folder = Path(folder)
    manifest = manifest_of({p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                            for p in _files(folder)})
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def manifest_problem(folder: str | os.PathLike, full: bool = True) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """Why ``folder`` does not match its manifest (None when it does), and the manifest when it was readable.

    Sizes are always compared, hashes only when ``full``; a missing file, or a file the manifest does
    not name, is a mismatch too. The manifest itself is read only as a small regular file.
    """
    from vlbench.io import read_regular_bytes

    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return f"no {MANIFEST}", None
    try:
        manifest = json.loads(read_regular_bytes(folder / MANIFEST, limit=_MAX_MANIFEST).decode("utf-8"))
        files = manifest["files"]
        entries = [(rel, int(meta["size"]), str(meta["sha256"])) for rel, meta in sorted(files.items())]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable {MANIFEST} ({type(exc).__name__})", None
    for rel, size, sha256 in entries:
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            return f"{MANIFEST} names a file outside the folder ({rel!r})", None
        if not path.is_file():
            return f"file {str(path)!r} is missing", manifest
        if path.stat().st_size != size or full and file_sha256(path) != sha256:
            return f"file {str(path)!r} does not match the hash written with it (changed or corrupted)", manifest
    extra = [p.relative_to(folder).as_posix() for p in _files(folder) if p.relative_to(folder).as_posix() not in files]
    if extra:
        return f"file(s) not written with it: {', '.join(extra[:3])}", manifest
    return None, manifest


def verify_manifest(folder: str | os.PathLike, label: str, hint: str, full: bool = True) -> dict[str, Any]:
    """Check every file of ``folder`` against its manifest (sizes only unless ``full``); a mismatch is one DataError."""
    problem, manifest = manifest_problem(folder, full)
    if problem is not None or manifest is None:
        raise DataError(f"{label}: cache {str(folder)!r}: {problem}. {hint}")
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
