"""Training checkpoints: everything a killed run needs to go on exactly where it stopped.

One folder per run, next to its record (``seed-N.json`` -> ``seed-N.ckpt/``)::

    LATEST                   name of the newest complete checkpoint (replaced atomically)
    step-00000120-3f9a1c/    model.safetensors  trainable parameters and buffers
                             training.pt        optimizer, scheduler and gradient-scaler state
                             state.json         counters, history, early stopping, RNG states, config digest
    best-00000100/           model.safetensors  the best validation weights so far

A checkpoint folder is written under a temporary name and renamed once complete; ``LATEST`` changes
only then, and older folders are deleted only after it did. A kill at any moment therefore leaves the
previous checkpoint readable. The folder is deleted once the run's record is written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from vlbench.io import atomic_write_text

__all__ = ["FORMAT", "Checkpoint", "CheckpointStore", "checkpoint_dir_for", "remove_checkpoints", "trainable_state"]

FORMAT = 1
POINTER = "LATEST"
_MODEL = "model.safetensors"
_TRAINING = "training.pt"
_STATE = "state.json"


def checkpoint_dir_for(record: Path) -> Path:
    """``.../seed-N.json`` -> ``.../seed-N.ckpt`` (a sibling folder of the record)."""
    record = Path(record)
    return record.with_name(record.stem + ".ckpt")


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


class CheckpointStore:
    """The checkpoint folder of one run; ``run_id`` (the config digest) and ``seed`` must match to resume."""

    def __init__(self, folder: Path, run_id: Optional[str], seed: int) -> None:
        self.folder = Path(folder)
        self.run_id = run_id
        self.seed = seed
        self.ignored: Optional[str] = None  # why an existing checkpoint was not used

    # --- reading ---------------------------------------------------------------------------------------
    def latest_name(self) -> Optional[str]:
        """The folder name ``LATEST`` points to, or None."""
        try:
            name = (self.folder / POINTER).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return name if name and "/" not in name and "\\" not in name and not name.startswith(".") else None

    def load(self) -> Optional[Checkpoint]:
        """The newest complete checkpoint of this run, or None (absent, unreadable, or another config's)."""
        from safetensors.torch import load_file

        name = self.latest_name()
        if name is None:
            return None
        where = self.folder / name
        try:
            state = json.loads((where / _STATE).read_text(encoding="utf-8"))
            if state.get("format") != FORMAT:
                self.ignored = f"checkpoint format {state.get('format')!r} is not {FORMAT}"
                return None
            if state.get("run_id") != self.run_id or state.get("seed") != self.seed:
                self.ignored = "the checkpoint was made for another config or seed"
                return None
            model = load_file(str(where / _MODEL))
            training = torch.load(where / _TRAINING, map_location="cpu", weights_only=True)
            best = None
            if state.get("best"):
                best = load_file(str(self.folder / state["best"] / _MODEL))
        except Exception as exc:  # noqa: BLE001  whatever a torn or foreign file raises, it is not resumed from
            self.ignored = f"the checkpoint in {where} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            return None
        return Checkpoint(name, state, model, training, best)

    # --- writing ---------------------------------------------------------------------------------------
    def _write_folder(self, name: str, files: dict[str, bytes]) -> None:
        """Write ``files`` into ``<folder>/<name>`` all at once (temporary folder, then rename)."""
        tmp = self.folder / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for file_name, data in files.items():
                _write_file(tmp / file_name, data)
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
        if best_name is not None and best is not None and not (self.folder / best_name / _MODEL).is_file():
            self._write_folder(best_name, {_MODEL: save(best, metadata={"format": str(FORMAT)})})
        buffer = io.BytesIO()
        torch.save(training, buffer)
        name = f"step-{step:08d}-{uuid.uuid4().hex[:6]}"
        full_state = {"format": FORMAT, "run_id": self.run_id, "seed": self.seed, "best": best_name, **state}
        self._write_folder(name, {
            _MODEL: save(model, metadata={"format": str(FORMAT)}),
            _TRAINING: buffer.getvalue(),
            # NaN/inf may appear in a history's metrics; Python's json reads them back
            _STATE: json.dumps(full_state, allow_nan=True).encode("utf-8"),
        })
        atomic_write_text(self.folder / POINTER, name + "\n")
        self._prune(keep={POINTER, name, best_name})
        return name

    def _prune(self, keep: set[Optional[str]]) -> None:
        for entry in self.folder.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("."):  # a pointer update torn by a kill
                entry.unlink(missing_ok=True)
