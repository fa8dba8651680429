"""One long-lived METEOR 1.5 Java process, speaking the protocol of pycocoevalcap's ``Meteor`` wrapper.

Same jar, same command (``-jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``), same ``SCORE`` and
``EVAL`` lines, so the numbers are pycocoevalcap's. What differs is the plumbing:

* the JVM (seconds to start: it loads the paraphrase table) is started once and reused by every call,
  which makes per-epoch validation scoring cheap;
* ``SCORE`` lines are written by a helper thread while the answers are read, instead of one round trip
  per image;
* a ``\\n`` or ``\\r`` inside a hypothesis or reference becomes a space: Java reads one command per line,
  so a stray line break would leave the reader waiting for an answer that never comes;
* stderr goes to a temp file (an unread pipe can fill up and block Java) and is quoted if Java dies;
* a watchdog kills the process if it stops answering, so a call can fail but never hang.

Example (needs Java):
    >>> with MeteorProcess() as meteor:  # doctest: +SKIP
    ...     meteor.score(["a man riding a horse"], [["a man rides a horse", "a horse"]])
    (0.5..., [0.5...])
"""

from __future__ import annotations

import atexit
import re
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import IO, Optional

from vlbench.errors import VLBenchError
from vlbench.metrics._java import pycocoevalcap_dir, require_java

__all__ = ["MeteorProcess", "shared_meteor"]

_JAVA_LINE_END = re.compile("\r\n|[\r\n]")  # what java.io.BufferedReader.readLine splits on


class MeteorProcess:
    """A persistent ``meteor-1.5.jar -stdio`` process; thread safe; close it (or use ``with``) when done."""

    def __init__(self, *, memory: str = "2G", timeout_s: float = 600.0) -> None:
        meteor_dir = pycocoevalcap_dir() / "meteor"
        self._cmd = [require_java(), "-jar", f"-Xmx{memory}", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
        self._cwd = str(meteor_dir)  # meteor finds data/paraphrase-en.gz next to the jar; read only
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._stderr: Optional[IO[bytes]] = None
        self.start()

    def start(self) -> None:
        """Start the JVM now (it loads in the background until the first call needs it)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                self._cmd, cwd=self._cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
            )
        except OSError as exc:
            raise VLBenchError(f"could not start METEOR (Java): {exc}") from exc

    @staticmethod
    def _clean(text: str) -> str:
        return _JAVA_LINE_END.sub(" ", text)

    def _score_line(self, hypothesis: str, references: Sequence[str]) -> str:
        # pycocoevalcap's _stat: only the hypothesis loses "|||" and doubled spaces
        hyp = self._clean(hypothesis).replace("|||", "").replace("  ", " ")
        refs = [self._clean(r) for r in references]
        return " ||| ".join(("SCORE", " ||| ".join(refs), hyp))

    def _died(self, what: str) -> VLBenchError:
        message = "no message"
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            message = lines[-1] if lines else message
        code = self._proc.poll() if self._proc is not None else None
        return VLBenchError(f"METEOR (Java) {what} (exit code {code}): {message}")

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-item scores for tokenized hypotheses and their reference lists."""
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
        if not hypotheses:
            raise ValueError("METEOR needs at least one hypothesis")
        with self._lock:
            self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            payload = "".join(self._score_line(h, r) + "\n" for h, r in zip(hypotheses, references)).encode()
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                proc.kill()

            watchdog = threading.Timer(self._timeout_s + 0.05 * len(hypotheses), kill)
            watchdog.daemon = True
            watchdog.start()
            writer_error: list[BaseException] = []

            def write() -> None:
                try:
                    proc.stdin.write(payload)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                except (BrokenPipeError, OSError) as exc:  # reported through the reader below
                    writer_error.append(exc)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            try:
                stats = [self._read_line(timed_out) for _ in hypotheses]
                writer.join()
                proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
                proc.stdin.flush()
                per_item = [float(self._read_line(timed_out)) for _ in hypotheses]
                corpus = float(self._read_line(timed_out))
            except BaseException as exc:
                # the protocol is out of step now: a fresh process serves the next call
                error = exc if isinstance(exc, (VLBenchError, KeyboardInterrupt)) else self._died(
                    f"failed ({type(exc).__name__}: {exc})"
                )
                proc.kill()
                proc.wait()
                self._proc = None
                raise error from (None if error is exc else exc)
            finally:
                watchdog.cancel()
            return corpus, per_item

    def _read_line(self, timed_out: threading.Event) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise self._died("stopped answering and was killed" if timed_out.is_set() else "exited")
        return line.decode().strip()

    def close(self) -> None:
        """Stop the Java process."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                if proc.stdin is not None:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass
                proc.kill()
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def __enter__(self) -> "MeteorProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  interpreter shutdown: nothing useful to report
            pass


_shared: list[MeteorProcess] = []
_shared_lock = threading.Lock()


def shared_meteor() -> MeteorProcess:
    """The process-wide METEOR process (started on first use, stopped at exit), so every caller shares one JVM."""
    with _shared_lock:
        if not _shared:
            _shared.append(MeteorProcess())
            atexit.register(_shared[0].close)
        return _shared[0]
