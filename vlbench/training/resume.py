"""What a checkpoint holds of a run's loop, whether it can resume this run, and putting it back in place.

With several processes the checkpoint holds the epoch's running sums over every process and each
process's random states, so that a resumed data-parallel run goes on exactly as it would have.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

import torch

from vlbench import distributed
from vlbench.training.checkpoint import Checkpoint, trainable_state
from vlbench.training.seeding import rng_state, set_rng_state
from vlbench.training.state import LoopState

__all__ = ["resume_problem", "every_process_state", "restore"]


def resume_problem(checkpoint: Checkpoint, module: torch.nn.Module, optimizer: Any) -> Optional[str]:
    """Why a checkpoint that passed its manifest still cannot resume ``module`` and ``optimizer`` (None if it can).

    Checked before anything is loaded into them, so a refused checkpoint leaves both as they were built.
    """
    try:
        LoopState.from_saved(checkpoint.state.get("loop"))
    except ValueError as exc:
        return f"a state this version cannot use ({exc})"
    by_process = checkpoint.state.get("rng_by_process")
    if not isinstance(by_process, list) or len(by_process) != distributed.world_size() or \
            not all(isinstance(rng, dict) for rng in by_process):
        return f"no random states for {distributed.world_size()} process(es)"
    expected = {k: tuple(v.shape) for k, v in trainable_state(module).items()}
    for what, tensors in (("weights", checkpoint.model), ("best weights", checkpoint.best)):
        if tensors is not None and expected != {k: tuple(v.shape) for k, v in tensors.items()}:
            return f"{what} that do not fit the model (other tensor names or shapes)"
    groups = [len(g["params"]) for g in optimizer.state_dict()["param_groups"]]
    try:
        fits = [len(g["params"]) for g in checkpoint.training["optimizer"]["param_groups"]] == groups
    except (TypeError, KeyError):
        fits = False
    if not fits or not isinstance(checkpoint.training.get("scheduler"), dict):
        return "an optimizer or scheduler state that does not fit this run"
    return None


def every_process_state(loop: LoopState, data: torch.Generator, device: torch.device) -> tuple[dict[str, Any], list[Any]]:
    """What a checkpoint saves of the loop: its state with the sums over every process, and each process's RNG states.

    With several processes this is a collective: every process calls it at the same point.
    """
    saved, rngs = asdict(loop), [rng_state(data)]
    if distributed.world_size() > 1:
        import torch.distributed as dist

        # on resume the main process holds the sums and the others start from 0 (see restore)
        dtype = torch.float32 if device.type == "mps" else torch.float64  # mps has no float64
        sums = torch.tensor([loop.loss_sum, loop.loss_count, loop.train_examples], dtype=dtype, device=device)
        dist.all_reduce(sums)
        loss_sum, loss_count, examples = sums.tolist()
        saved.update(loss_sum=loss_sum, loss_count=round(loss_count), train_examples=round(examples))
        rngs = distributed.gather_list(rngs)  # each process resumes its own dropout stream
    return saved, rngs


def restore(checkpoint: Checkpoint, module: torch.nn.Module, optimizer: Any, scheduler: Any, scaler: Optional[Any],
            generator: torch.Generator) -> LoopState:
    """Load a checkpoint that passed :func:`resume_problem` into the run's objects; the loop state to go on with.

    ``generator`` (the data order) and the global random states get this process's saved states.
    """
    module.load_state_dict(checkpoint.model, strict=False)
    optimizer.load_state_dict(checkpoint.training["optimizer"])
    scheduler.load_state_dict(checkpoint.training["scheduler"])
    if scaler is not None and checkpoint.training.get("scaler"):
        scaler.load_state_dict(checkpoint.training["scaler"])
    loop = LoopState.from_saved(checkpoint.state["loop"])
    if not distributed.is_main():  # the checkpoint's sums are every process's: counted once, on the main one
        loop.loss_sum, loop.loss_count, loop.train_examples = 0.0, 0, 0
    set_rng_state(checkpoint.state["rng_by_process"][distributed.rank()], generator)
    return loop
