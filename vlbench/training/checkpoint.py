"""Training checkpoints: everything a killed run needs to go on exactly where it stopped, checked before use.

One folder per run, next to its record (``seed-N.json`` -> ``seed-N.ckpt/``)::

    LATEST                   name of the newest complete checkpoint (replaced atomically)
    step-00000120-3f9a1c/    model.safetensors  trainable parameters and buffers
                             training.pt        optimizer, scheduler and gradient-scaler state
                             state.json         counters, history, early stopping, RNG states, config digest
                             manifest.json      size and SHA-256 of the three files above (written last)
    step-00000096-0b1d2e/    the checkpoint before (kept as a fallback)
    best-00000100/           model.safetensors, manifest.json: the best validation weights so far

A checkpoint folder is written under a temporary name, its manifest last, and renamed once complete;
``LATEST`` changes only then, and older folders are deleted only after it did. A kill at any moment
therefore leaves the previous checkpoint readable. Loading checks every file against the manifest
before anything is parsed: a checkpoint that fails (flipped bits, a missing or edited file, a state
this code cannot use) is moved to ``seed-N.ckpt.rejected/`` with one ``warning:`` line, and the run
goes on from the checkpoint before it, or afresh. The folder is deleted once the run's record is written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vlbench import distributed
from vlbench.data.integrity import MANIFEST, manifest_entry, manifest_of, manifest_problem
from vlbench.io import atomic_write_text, read_regular_bytes

__all__ = ["FORMAT", "POINTER", "Checkpoint", "CheckpointStore", "CheckpointRejected", "checkpoint_dir_for",
           "rejected_dir_for", "remove_checkpoints", "trainable_state"]

FORMAT = 2  # 2: every folder carries a manifest (format 1 had none and cannot be checked)
POINTER = "LATEST"
_MODEL = "model.safetensors"
_TRAINING = "training.pt"
_STATE = "state.json"
_STEP_PREFIX = "step-"


def checkpoint_dir_for(record: Path) -> Path:
    """``.../seed-N.json`` -> ``.../seed-N.ckpt`` (a sibling folder of the record)."""
    record = Path(record)
    return record.with_name(record.stem + ".ckpt")


def rejected_dir_for(folder: Path) -> Path:
    """Where checkpoints that failed their check are kept: ``seed-N.ckpt`` -> ``seed-N.ckpt.rejected``."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".rejected")


def remove_checkpoints(path: Path) -> None:
    """Delete a run's checkpoint folder (given the record path or the folder itself); absent is fine."""
    path = Path(path)
    folder = path if path.suffix == ".ckpt" else checkpoint_dir_for(path)
    shutil.rmtree(folder, ignore_errors=True)


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes in a model: its trainable parameters and its buffers, copied to the CPU."""
    wanted = {name for name, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}
    wanted.update(name for name, _ in module.named_buffers(remove_duplicate=False))
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items() if k in wanted}


@dataclass
class Checkpoint:
    """One loaded checkpoint: the JSON state, model tensors, training objects' states, and the best weights."""

    name: str
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    training: dict[str, Any]
    best: Optional[dict[str, torch.Tensor]]


class CheckpointRejected(Exception):
    """A checkpoint that may not be resumed from; the message says why (without the folder's name).

    ``best`` names its best-weights folder when that folder is what failed the check (``best_reason`` why).
    """

    def __init__(self, reason: str, best: Optional[str] = None, best_reason: str = "") -> None:
        super().__init__(reason)
        self.best, self.best_reason = best, best_reason


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _safe_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


class CheckpointStore:
    """The checkpoint folder of one run; ``run_id`` (the config digest) and ``seed`` must match to resume.

    ``warn`` hears one ``warning:`` line for each checkpoint set aside.
    """

    def __init__(self, folder: Path, run_id: Optional[str], seed: int,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        self.folder = Path(folder)
        self.run_id = run_id
        self.seed = seed
        self.warn = warn or (lambda message: None)
        self.ignored: Optional[str] = None  # why an existing checkpoint was not used
        self.rejected: list[Path] = []  # where checkpoints that failed their check went
        self._fallback: tuple[Optional[str], Optional[str]] = (None, None)  # (step folder, its best) kept on save

    # --- reading ---------------------------------------------------------------------------------------
    def latest_name(self) -> Optional[str]:
        """The folder name ``LATEST`` points to, or None."""
        try:
            name = read_regular_bytes(self.folder / POINTER, limit=4096).decode("utf-8").strip()
        except (OSError, ValueError):
            return None
        return name if _safe_name(name) else None

    def candidates(self) -> list[str]:
        """Step checkpoints to try, newest first: the one ``LATEST`` names, then the others by step."""
        try:
            steps = sorted((p.name for p in self.folder.iterdir() if p.name.startswith(_STEP_PREFIX) and p.is_dir()),
                           reverse=True)
        except OSError:
            return []
        latest = self.latest_name()
        return ([latest] if latest in steps else []) + [name for name in steps if name != latest]

    def load(self, accept: Optional[Callable[[Checkpoint], Optional[str]]] = None) -> Optional[Checkpoint]:
        """The newest checkpoint of this run that passes its check, or None.

        A checkpoint of another config or seed is left alone (``ignored`` says so); one that fails its
        manifest, cannot be read, or that ``accept`` refuses (it returns the reason) is set aside.
        """
        for name in self.candidates():
            try:
                checkpoint = self.read(name, accept)
            except CheckpointRejected as reason:
                if reason.best is not None and (self.folder / reason.best).exists():
                    self._set_aside(reason.best, reason.best_reason)
                self._set_aside(name, str(reason))
                continue
            if checkpoint is None:
                continue
            self._fallback = (checkpoint.name, checkpoint.state.get("best"))
            return checkpoint
        return None

    def load_shared(self, accept: Optional[Callable[[Checkpoint], Optional[str]]] = None) -> Optional[Checkpoint]:
        """:meth:`load` on the main process (the one that sets checkpoints aside), then its choice on every process.

        A process that cannot read the chosen checkpoint fails the run on all of them (no process resumes
        alone). With one process this is :meth:`load`.
        """
        if distributed.world_size() == 1:
            return self.load(accept)
        held: list[Optional[Checkpoint]] = [None]

        def choose() -> Optional[str]:
            held[0] = self.load(accept)
            return held[0].name if held[0] is not None else None

        name = distributed.on_main(choose)
        if distributed.is_main():
            return distributed.agree(lambda: held[0])
        return distributed.agree(lambda: self.read(name, accept) if name is not None else None)

    def read(self, name: str, accept: Optional[Callable[[Checkpoint], Optional[str]]] = None) -> Optional[Checkpoint]:
        """Check and load the step checkpoint ``name``; None for another config's; CheckpointRejected when unusable."""
        from safetensors.torch import load_file

        where = self.folder / name
        self._check(where)
        try:
            state = json.loads(read_regular_bytes(where / _STATE, what="checkpoint state").decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointRejected(f"unreadable {_STATE} ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else None
            raise CheckpointRejected(f"format {found!r}, not {FORMAT}")
        if state.get("run_id") != self.run_id or state.get("seed") != self.seed:
            self.ignored = "the checkpoint was made for another config or seed"
            return None
        best_name = state.get("best")
        if best_name is not None:
            if not _safe_name(best_name):
                raise CheckpointRejected(f"best weights named {best_name!r}")
            try:
                self._check(self.folder / best_name)
            except CheckpointRejected as reason:
                raise CheckpointRejected(f"its best weights {best_name} failed their check", best=best_name,
                                         best_reason=str(reason)) from None
        try:
            model = load_file(str(where / _MODEL))
            training = torch.load(where / _TRAINING, map_location="cpu", weights_only=True)
            best = load_file(str(self.folder / best_name / _MODEL)) if best_name is not None else None
        except Exception as exc:  # noqa: BLE001  whatever a file this code cannot read raises, it is not resumed from
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckpointRejected(f"unreadable ({type(exc).__name__}: {first})") from None
        if not isinstance(training, dict):
            raise CheckpointRejected(f"{_TRAINING} holds a {type(training).__name__}, not a mapping")
        checkpoint = Checkpoint(name, state, model, training, best)
        problem = accept(checkpoint) if accept is not None else None
        if problem is not None:
            raise CheckpointRejected(problem)
        return checkpoint

    @staticmethod
    def _check(where: Path) -> None:
        if not where.is_dir():
            raise CheckpointRejected("missing")
        problem, _ = manifest_problem(where)
        if problem is not None:
            raise CheckpointRejected(problem)

    def _set_aside(self, name: str, reason: str) -> None:
        """Move ``<folder>/<name>`` to the rejected folder (never deleted: it may be inspected) and warn."""
        source = self.folder / name
        target_dir = rejected_dir_for(self.folder)
        target = target_dir / name
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target = target_dir / f"{name}-{uuid.uuid4().hex[:6]}"
            os.replace(source, target)
        except OSError as exc:
            self.warn(f"warning: checkpoint {source}: {reason}; not used (it could not be moved aside: "
                      f"{exc.strerror or exc})")
            return
        self.rejected.append(target)
        self.warn(f"warning: checkpoint {source}: {reason}; not used, moved to {target}")

    # --- writing ---------------------------------------------------------------------------------------
    def _write_folder(self, name: str, files: dict[str, bytes]) -> None:
        """Write ``files`` and then their manifest into ``<folder>/<name>`` at once (temporary folder, then rename)."""
        tmp = self.folder / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for file_name, data in files.items():
                _write_file(tmp / file_name, data)
            manifest = manifest_of({file_name: manifest_entry(data) for file_name, data in files.items()})
            _write_file(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))  # last: it vouches
            _fsync_dir(tmp)
            os.replace(tmp, self.folder / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.folder)

    def save(self, state: dict[str, Any], model: dict[str, torch.Tensor], training: dict[str, Any],
             best_name: Optional[str], best: Optional[dict[str, torch.Tensor]], step: int) -> str:
        """Write a new checkpoint (and the best weights when they are new), point ``LATEST`` at it, drop older ones."""
        from safetensors.torch import save

        self.folder.mkdir(parents=True, exist_ok=True)
        if best_name is not None and best is not None and not (self.folder / best_name / MANIFEST).is_file():
            shutil.rmtree(self.folder / best_name, ignore_errors=True)  # a folder without manifest is nobody's
            self._write_folder(best_name, {_MODEL: save(best, metadata={"format": str(FORMAT)})})
        buffer = io.BytesIO()
        torch.save(training, buffer)
        name = f"{_STEP_PREFIX}{step:08d}-{uuid.uuid4().hex[:6]}"
        full_state = {"format": FORMAT, "run_id": self.run_id, "seed": self.seed, "best": best_name, **state}
        self._write_folder(name, {
            _MODEL: save(model, metadata={"format": str(FORMAT)}),
            _TRAINING: buffer.getvalue(),
            # NaN/inf may appear in a history's metrics; Python's json reads them back
            _STATE: json.dumps(full_state, allow_nan=True).encode("utf-8"),
        })
        atomic_write_text(self.folder / POINTER, name + "\n")
        self._prune(keep={POINTER, name, best_name, *self._fallback})
        self._fallback = (name, best_name)
        return name

    def _prune(self, keep: set[Optional[str]]) -> None:
        for entry in self.folder.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("."):  # a pointer update torn by a kill
                entry.unlink(missing_ok=True)
