"""Data parallelism across processes (``accelerate launch`` / ``torchrun``): who does what, and how results meet.

Training shards come from accelerate's prepared DataLoader. Evaluation splits each pass into one
contiguous block of examples per process (no padding, so nothing is counted twice), gathers the blocks
in rank order (so the result is in the split's own order, exactly as one process would produce it),
and scores on the main process only (one METEOR JVM), which then hands the result to every process
so that all of them take the same early-stopping and checkpoint decisions. With one process every
function here is a no-op and the single-process code path is unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch

__all__ = [
    "world_size",
    "rank",
    "is_main",
    "barrier",
    "main_process_first",
    "broadcast",
    "on_main",
    "shard_range",
    "eval_batches",
    "gather_list",
    "gather_with_grad",
    "unwrap",
]

T = TypeVar("T")


def _dist() -> Optional[Any]:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """Number of processes of this run (1 without a process group)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def is_main() -> bool:
    """Whether this process writes records, caches and predictions."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for with one)."""
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (e.g. builds a cache); the others run it after, reading that cache."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def broadcast(value: T) -> T:
    """The main process's ``value`` on every process (picklable objects)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return value
    holder = [value if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and return its result everywhere (an error there is raised everywhere)."""
    if world_size() == 1:
        return fn()
    outcome: Any = None
    if is_main():
        try:
            outcome = ("ok", fn())
        except Exception as exc:  # noqa: BLE001  the others must not wait forever for a result
            outcome = ("error", exc)
    kind, value = broadcast(outcome)
    if kind == "error":
        raise value
    return value


def shard_range(n: int) -> range:
    """This process's contiguous block of ``range(n)``; the blocks of all ranks, in rank order, are ``range(n)``."""
    size, me = world_size(), rank()
    return range(me * n // size, (me + 1) * n // size)


def eval_batches(task: Any, split: str, batch_size: int, modalities: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """This process's batches of an evaluation pass: all of the split with one process, its block with several.

    Inside a run's :meth:`vlbench.data.resident.DeviceSplits.reading` block, a split kept on the device
    gives the same batches, gathered there.
    """
    from torch.utils.data import DataLoader

    from vlbench.data.resident import device_split, index_batch

    # a split on the device still goes through a DataLoader of the same shape: starting one draws from the
    # global random state, and the dropout masks of the steps after this pass must not depend on the path
    resident = device_split(task, split, modalities)
    if world_size() == 1:
        if resident is None:
            yield from task.batches(split, batch_size, modalities)
            return
        from vlbench.progress import track

        positions = task.index_loader(split, batch_size)
        yield from track(map(resident.batch, positions), len(positions), f"scoring {split}")
        return
    block = list(shard_range(task.num_examples(split)))
    if not block:
        return
    collate = index_batch if resident is not None else (lambda idx: task.collate(split, list(idx), modalities))
    loader = DataLoader(block, batch_size=batch_size, shuffle=False, collate_fn=collate)
    yield from loader if resident is None else map(resident.batch, loader)


def gather_list(items: list[T]) -> list[T]:
    """Every process's list, concatenated in rank order (the whole pass, in order, after :func:`eval_batches`)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return items
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; the gradient of this process's rows is the sum over processes of theirs."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rows, ctx.rank = tensor.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        # every process computed the same global loss, so each holds a full gradient; summing them and
        # letting DDP average over processes gives exactly the single-process gradient
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch of ``tensor`` (equal rows per process), differentiable for this process's rows."""
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def unwrap(model: Any) -> Any:
    """The module inside a DistributedDataParallel wrapper (evaluation runs it directly: ranks need not stay in step)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
