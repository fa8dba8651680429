"""One lock per run: a second process leaves a running run alone (or waits), a dead holder never blocks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.process_helpers import TINY_RUN, run, start
from vlbench.locks import LockBusy, RunLock, lock_path


def test_second_holder_is_refused_then_admitted(tmp_path):
    record = tmp_path / "seed-0.json"
    with RunLock(record):
        holder = json.loads((tmp_path / "seed-0.lock.owner").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}"):
            RunLock(record).acquire()
    assert not (tmp_path / "seed-0.lock.owner").exists()
    with RunLock(record):  # free again
        pass


def test_taking_the_lock_removes_the_temp_files_of_killed_writes_of_that_run_only(tmp_path):
    record = tmp_path / "seed-1.json"
    leftovers = [".seed-1.json.k2j4.tmp", ".seed-1.predictions.json.a8.tmp", ".seed-1.lock.owner.q.tmp",
                 ".seed-1.cfg-0123abcd.json.z.tmp", ".seed-1.weights.safetensors.w.tmp"]
    others = [".seed-10.json.k.tmp", ".seed-2.json.k.tmp", "seed-1.json", ".seed-1.json.tmp-not-ours"]
    with RunLock(record):  # a writer holds the run's lock while its temp files exist: they are not touched
        for name in leftovers + others:
            (tmp_path / name).write_text("x")
        with pytest.raises(LockBusy):
            RunLock(record).acquire()
        assert all((tmp_path / name).exists() for name in leftovers)
    notes: list[str] = []
    with RunLock(record, note=notes.append):
        assert sorted(p.name for p in tmp_path.iterdir() if p.name not in {"seed-1.lock", "seed-1.lock.owner"}) == \
            sorted(others)
    assert len(notes) == 1 and "removed 5 temporary file(s)" in notes[0], notes


def test_lock_of_a_dead_holder_is_taken_over(tmp_path):
    record = tmp_path / "seed-0.json"
    # the OS lock stays held by a live process (as a descriptor inherited by a forked child would keep it)
    # while the owner it names has died: the lock is stale and is taken over
    holder_script = ("import fcntl, os, sys, time\n"
                     f"fd = os.open({str(lock_path(record))!r}, os.O_RDWR | os.O_CREAT)\n"
                     "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                     "print('locked', flush=True)\n"
                     "time.sleep(60)\n")
    keeper = subprocess.Popen([sys.executable, "-c", holder_script], stdout=subprocess.PIPE, text=True)
    try:
        assert keeper.stdout.readline().strip() == "locked"
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        dead = {"pid": gone.pid, "host": socket.gethostname(), "since": "2026-01-01T00:00:00+0000",
                "process_start": None}
        (tmp_path / "seed-0.lock.owner").write_text(json.dumps(dead))
        notes: list[str] = []
        with RunLock(record, note=notes.append):
            assert json.loads((tmp_path / "seed-0.lock.owner").read_text())["pid"] == os.getpid()
            with pytest.raises(LockBusy):  # and it is really held now
                RunLock(record).acquire()
        assert any(f"pid {gone.pid}" in n and "no longer running" in n for n in notes), notes
    finally:
        keeper.kill()
        keeper.wait()


def test_lock_of_a_live_holder_is_never_taken_over(tmp_path):
    record = tmp_path / "seed-0.json"
    holder_script = ("import fcntl, os, sys, time\n"
                     f"fd = os.open({str(lock_path(record))!r}, os.O_RDWR | os.O_CREAT)\n"
                     "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                     "print('locked', flush=True)\n"
                     "time.sleep(60)\n")
    keeper = subprocess.Popen([sys.executable, "-c", holder_script], stdout=subprocess.PIPE, text=True)
    try:
        assert keeper.stdout.readline().strip() == "locked"
        for owner in (None, {"pid": keeper.pid, "host": socket.gethostname(), "since": "x", "process_start": None}):
            if owner is not None:
                (tmp_path / "seed-0.lock.owner").write_text(json.dumps(owner))
            with pytest.raises(LockBusy):
                RunLock(record).acquire()
    finally:
        keeper.kill()
        keeper.wait()


def test_two_processes_on_one_results_folder(tmp_path, cache_dir):
    base = [*TINY_RUN, "--baseline", "vilt", "--results-dir", str(tmp_path)]
    record = tmp_path / "vqa" / "shapes" / "vilt" / "seed-0.json"
    owner = tmp_path / "vqa" / "shapes" / "vilt" / "seed-0.lock.owner"
    first = start([*base, "--epochs", "100000", "--set", "training.patience=0"], cache_dir)  # trains until killed
    try:
        deadline = time.monotonic() + 180
        while not owner.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert owner.exists(), first.communicate(timeout=30)
        assert json.loads(owner.read_text())["pid"] == first.pid
        second = run([*base, "--max-steps", "2"], cache_dir)
        assert second.returncode == 1, second.stderr
        assert f"pid {first.pid}" in second.stderr and "--wait" in second.stderr and "Traceback" not in second.stderr
        assert not record.exists()
        waiter = start([*base, "--max-steps", "2", "--wait"], cache_dir)
        time.sleep(3)
        # still waiting for the first process; if not, the failure shows what each process printed
        assert waiter.poll() is None, ("the waiter ended early", waiter.communicate(timeout=30))
        assert first.poll() is None, ("the first run ended early", first.communicate(timeout=30))
        assert not record.exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    out, err = waiter.communicate(timeout=180)
    assert waiter.returncode == 0, err
    assert f"pid {first.pid}" in err and "stopped while holding" in err
    assert json.loads(record.read_text())["status"] == "ok"
    assert not owner.exists()
