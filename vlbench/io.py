"""Atomic file writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vlbench.errors import VLBenchError

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_write_json", "read_json"]


def _umask() -> int:
    """The process umask (read by setting it and putting it back: Python has no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` through a temp file in the same folder and an atomic rename.

    The file gets the usual permissions (0666 less the umask), not mkstemp's owner-only 0600, so that
    a results folder shared by a group stays readable. A target that is a folder, or a folder that
    cannot be written, is one clear VLBenchError.
    """
    path = Path(path)
    if path.is_dir():
        raise VLBenchError(f"{str(path)!r} is a folder; give the path of a file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise VLBenchError(f"cannot write {str(path)!r}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.chmod(tmp, 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise VLBenchError(f"cannot write {str(path)!r}: {exc.strerror or exc}.") from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically (NaN is refused so that records stay valid JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
