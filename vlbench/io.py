"""Atomic file writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from vlbench.errors import DataError, VLBenchError

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_write_json", "read_json", "read_regular_bytes",
           "UnreadableFileError", "MAX_INPUT_BYTES", "temp_files_of", "references_path", "JSON_REFERENCES",
           "TEXT_REFERENCES", "path_problem"]

# the largest input file read whole: official VQA v2 train annotations are ~330 MB, Karpathy's COCO file ~140 MB
MAX_INPUT_BYTES = 2 << 30
_TEMP_SUFFIX = ".tmp"
# suffixes of the references file a task writes beside its predictions, so that `vlbench score` can reproduce them
JSON_REFERENCES = ".references.json"  # captioning (COCO captions) and retrieval (each text's image)
TEXT_REFERENCES = ".ref.txt"  # translation: one reference per line, as sacreBLEU reads them


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system of ``path``'s nearest existing folder allows."""
    for folder in (path, *path.parents):
        try:
            return int(os.pathconf(folder, "PC_NAME_MAX"))
        except (OSError, ValueError):  # missing yet, or not a folder: ask its parent
            continue
    return 255


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a file or folder here (empty, a part longer than the file system allows), else None."""
    if not text.strip():
        return "an empty path; give a file or folder name"
    path = Path(text).expanduser()
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)))
    limit = _name_max(path.absolute())
    if len(os.fsencode(longest)) > limit:
        return f"the name {longest[:40]!r}... is {len(os.fsencode(longest))} bytes, longer than the {limit} this file system allows"
    if len(os.fsencode(str(path.absolute()))) >= 4096:
        return "the path is longer than the 4096 bytes the operating system allows"
    return None


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
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


def temp_files_of(folder: str | os.PathLike, stem: str) -> list[Path]:
    """Temp files of :func:`atomic_write_bytes` writes to ``folder/<stem>.*`` (``.<stem>.<...>.tmp``), sorted.

    One that exists while no write to those files runs is the leftover of a write killed before its
    rename; only the caller can know that none runs (it holds the lock all their writers take).
    """
    prefix = f".{stem}."
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if p.name.startswith(prefix) and p.name.endswith(_TEMP_SUFFIX)
                  and p.is_file() and not p.is_symlink())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically; a lone surrogate (text from a hand-edited file) is written as its ``\\udXXX`` escape."""
    return atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically (NaN is refused so that records stay valid JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False) + "\n")


def references_path(predictions: str | os.PathLike, suffix: str = JSON_REFERENCES) -> Path:
    """The references file written beside a predictions file: ``<stem><suffix>``."""
    predictions = Path(predictions)
    return predictions.with_name(predictions.stem + suffix)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (a regular file only: see :func:`read_regular_bytes`)."""
    return json.loads(read_regular_bytes(path).decode("utf-8"))


class UnreadableFileError(DataError, OSError):
    """A file that :func:`read_regular_bytes` refuses; ``reason`` is the message without the file's name.

    It is also an OSError, so that code which already treats an unreadable file as absent keeps doing so.
    """

    def __init__(self, what: str, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{what} {str(path)!r} {reason}.")
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _read_bounded(fd: int, size: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes from ``fd`` (the first read sized by the file, then 1 MiB at a time)."""
    parts, total, want = [], 0, size + 1
    with os.fdopen(fd, "rb", closefd=False) as handle:
        while total <= limit:
            chunk = handle.read(min(want, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total, want = total + len(chunk), 1 << 20
    return b"".join(parts)


def read_regular_bytes(path: str | os.PathLike, *, what: str = "file", limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is one UnreadableFileError.

    The file is opened without blocking and checked on the open descriptor, so a FIFO, a device (a link
    to /dev/zero) or a file swapped after a check is refused instead of read forever; at most
    ``limit + 1`` bytes are read, so a file that grows while it is read is refused too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UnreadableFileError(what, path, "does not exist") from None
    except OSError as exc:
        raise UnreadableFileError(what, path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(what, path, f"is not a regular file (it is {_kind(info.st_mode)})")
        data = b"" if info.st_size > limit else _read_bounded(fd, info.st_size, limit)
    except UnreadableFileError:
        raise
    except OSError as exc:
        raise UnreadableFileError(what, path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if info.st_size > limit or len(data) > limit:
        raise UnreadableFileError(what, path, f"is larger than {limit:,} bytes, the most this input may hold")
    return data
