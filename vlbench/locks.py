"""One lock per run, shared by every process that writes into a results folder.

The lock is an OS-level file lock (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows) on
``seed-N.lock`` next to the run's record. The kernel releases it when its holder dies, even by SIGKILL,
so a crashed run never blocks the next one. Beside it, ``seed-N.lock.owner`` names the holder (pid,
host, start time) so that a second process can say who runs the run. A lock still held while its
recorded owner is dead (a forked child outlived it and inherited the descriptor, or a filesystem
that does not honour OS locks) is stale: it is taken over under a second lock, so that two
processes never take over the same lock at once.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Optional

from filelock import FileLock, Timeout

from vlbench.io import atomic_write_text, temp_files_of

__all__ = ["RunLock", "LockBusy", "lock_path", "describe_holder"]


class LockBusy(Exception):
    """Another live process holds the lock (``holder`` describes it when known)."""

    def __init__(self, path: Path, holder: Optional[dict[str, Any]]) -> None:
        super().__init__(f"{path} is locked by {describe_holder(holder)}")
        self.path = path
        self.holder = holder


def lock_path(record: Path) -> Path:
    """The lock file of the run whose record lives at ``record``."""
    return record.with_name(record.stem + ".lock")


def describe_holder(holder: Optional[dict[str, Any]]) -> str:
    """``pid 123 on host h since 2026-...`` or ``another process`` when the owner file is missing."""
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _process_start(pid: int) -> Optional[float]:
    """When process ``pid`` started (to tell a live holder from a new process that reused its pid)."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001  no such process, no permission, or psutil missing
        return None


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not yet been reaped by its parent."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder still runs; a holder on another host is assumed alive."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    if _zombie(pid):
        return False  # killed, and only waiting for its parent to collect its exit status
    started = holder.get("process_start")
    now_started = _process_start(pid)
    if isinstance(started, (int, float)) and now_started is not None and abs(now_started - started) > 1.0:
        return False  # the pid was reused by a newer process
    return True


class RunLock:
    """Exclusive, cross-process lock on one run: ``with RunLock(record_path):`` ... (raises LockBusy)."""

    def __init__(self, record: Path, *, wait: bool = False, poll_seconds: float = 1.0,
                 note: Callable[[str], None] = lambda message: None) -> None:
        self.path = lock_path(Path(record))
        self.owner_path = self.path.with_name(self.path.name + ".owner")
        self.wait = wait
        self.poll_seconds = poll_seconds
        self.note = note
        self._lock: Optional[FileLock] = None

    def read_owner(self) -> Optional[dict[str, Any]]:
        """The holder recorded in the owner file, or None."""
        try:
            holder = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _try(self, timeout: float) -> bool:
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return False
        self._lock = lock
        return True

    def _take_over(self, holder: dict[str, Any]) -> bool:
        """Replace a lock whose owner is dead; serialised by a second lock so only one process does it."""
        guard = FileLock(str(self.path) + ".takeover")
        try:
            guard.acquire(timeout=10)
        except Timeout:
            return False
        try:
            if self.read_owner() != holder:
                return False  # someone else took it over meanwhile
            if not self._try(0):
                # the old file stays locked by whatever inherited it; new lockers meet a fresh file
                self.path.unlink(missing_ok=True)
                if not self._try(0):
                    return False
            self._write_owner()
            return True
        finally:
            guard.release()

    def _write_owner(self) -> None:
        pid = os.getpid()
        holder = {"pid": pid, "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "process_start": _process_start(pid)}
        atomic_write_text(self.owner_path, json.dumps(holder) + "\n")

    def acquire(self) -> "RunLock":
        """Take the lock; without ``wait`` a live holder raises LockBusy, with it this polls until free.

        Once held, the temp files that killed writes of this run's files left behind are removed:
        every writer of ``seed-N.*`` holds this lock, so none of them can still be writing.
        """
        self._acquire()
        self._remove_leftover_temps()
        return self

    def _remove_leftover_temps(self) -> None:
        removed = []
        for path in temp_files_of(self.path.parent, self.path.stem):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path.name)
        if removed:
            self.note(f"removed {len(removed)} temporary file(s) left in {self.path.parent} by a write that was "
                      f"killed: {', '.join(removed[:3])}{' ...' if len(removed) > 3 else ''}")

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while not self._try(self.poll_seconds if waited else 0):
            holder = self.read_owner()
            if holder is not None and not _alive(holder):
                if self._take_over(holder):
                    self.note(f"took over the stale lock {self.path} of {describe_holder(holder)} (no longer running)")
                    return
                continue
            if not self.wait:
                raise LockBusy(self.path, holder)
            if not waited:
                self.note(f"waiting for {describe_holder(holder)}, which holds {self.path}")
            waited = True
        previous = self.read_owner()
        if previous is not None and previous.get("pid") != os.getpid() and not _alive(previous):
            self.note(f"{describe_holder(previous)} stopped while holding {self.path}; its lock was released")
        self._write_owner()

    def release(self) -> None:
        """Drop the owner file (while still holding the lock) and then the lock."""
        if self._lock is None:
            return
        holder = self.read_owner()
        if holder is not None and holder.get("pid") == os.getpid():
            self.owner_path.unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
