"""Run ``python -m vlbench`` as a real child process with this checkout on the path and a private cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_DATA

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
               "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
TINY_RUN = ["run", "--task", "vqa", "--quiet", *TINY_DATA, *SMALL_MODEL]


def child_env(cache_dir: Path) -> dict[str, str]:
    """The environment of a vlbench child: this checkout first on the path, one thread, a private cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({"VLBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def start(args: list[str], cache_dir: Path, **kwargs) -> subprocess.Popen:
    """Start ``python -m vlbench ARGS`` without waiting, with Ctrl-C (SIGINT) at its default disposition.

    A shell runs background commands with SIGINT ignored, and a child inherits that; Python then never
    installs its KeyboardInterrupt handler, so a test sending SIGINT would depend on how pytest was started.
    """
    return subprocess.Popen([sys.executable, "-m", "vlbench", *args], env=child_env(cache_dir), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def run(args: list[str], cache_dir: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m vlbench ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "vlbench", *args], env=child_env(cache_dir), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port nobody listens on now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cache_dir: Path, processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node N -m vlbench ARGS`` (gloo on CPU) to its end, or kill all of it at ``timeout``.

    At the timeout the launcher and every process below it are killed (torchrun starts each worker in a
    session of its own, and a hung worker must fail the test, not outlive it holding its output pipes);
    the result's ``returncode`` is then None.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "vlbench", *args]
    import psutil

    child = subprocess.Popen(command, env=child_env(cache_dir), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        family = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
        for process in family:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        out, err = child.communicate()
        return subprocess.CompletedProcess(command, None, out, err)
    return subprocess.CompletedProcess(command, child.returncode, out, err)
