"""Data parallelism across processes (``accelerate launch`` / ``torchrun``): who does what, and how results meet.

Training shards come from accelerate's prepared DataLoader. Evaluation splits each pass into one
contiguous block of examples per process (no padding, so nothing is counted twice), gathers the blocks
in rank order (so the result is in the split's own order, exactly as one process would produce it),
and scores on the main process only (one METEOR JVM), which then hands the result to every process
so that all of them take the same early-stopping and checkpoint decisions. With one process every
function here is a no-op and the single-process code path is unchanged.

Failures. Every file is written by the main process alone; what it writes, or fails to write, reaches
the others through :func:`on_main`. Where the processes are in step (a run's start, a checkpoint, a
score), a failure on any of them is raised on all of them (:func:`on_main`, :func:`agree`, the
all-reduced loss check) and marked agreed, so the run fails on every process at the same point and the
sweep goes on. A failure inside a stretch of collective operations (a training step, an evaluation
pass) cannot be heard by processes already waiting in the next collective: that process reports it
and exits (:func:`fail_fast`), which ends the others instead of leaving them waiting.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NoReturn, Optional, TypeVar

import torch

__all__ = [
    "world_size",
    "rank",
    "is_main",
    "barrier",
    "broadcast",
    "on_main",
    "agree",
    "AgreedFailure",
    "mark_agreed",
    "is_agreed",
    "claim_error_report",
    "fail_fast",
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


def broadcast(value: T) -> T:
    """The main process's ``value`` on every process (picklable objects)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return value
    holder = [value if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class AgreedFailure(Exception):
    """Another process's failure, raised here too so that every process leaves the run at the same point."""

    def __init__(self, source_rank: int, kind: str, reason: str) -> None:
        super().__init__(f"process {source_rank} failed: {kind}: {reason}")
        self.source_rank, self.kind, self.reason = source_rank, kind, reason


def mark_agreed(exc: BaseException) -> BaseException:
    """Note that every process raises ``exc`` (or its :class:`AgreedFailure`) at this same point; returns it."""
    try:
        exc.vlbench_agreed = True  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: it is then treated as this process's alone
        pass
    return exc


def is_agreed(exc: BaseException) -> bool:
    """Whether every process raised ``exc`` together (always true with one process)."""
    return world_size() == 1 or bool(getattr(exc, "vlbench_agreed", False))


def _describe(exc: BaseException) -> tuple[str, str]:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return type(exc).__name__, (lines[0].strip() if lines else type(exc).__name__)[:500]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and return its result everywhere (an error there is raised everywhere).

    The main process raises its own exception, the others an :class:`AgreedFailure` describing it; both
    are marked agreed (:func:`is_agreed`). The result must pickle; a result that does not is an error too.
    """
    if world_size() == 1:
        return fn()
    import pickle

    outcome: Any = None
    error: Optional[BaseException] = None
    if is_main():
        try:
            value = fn()
            pickle.dumps(value)  # fails here, before the broadcast, rather than inside it on one process only
            outcome = ("ok", value)
        except Exception as exc:  # noqa: BLE001  the others must not wait forever for a result
            error = exc
            outcome = ("error", _describe(exc))
    kind, value = broadcast(outcome)
    if kind == "error":
        raise mark_agreed(error if error is not None else AgreedFailure(0, *value))
    return value


def agree(fn: Callable[[], T]) -> T:
    """Run ``fn`` on every process; if it raised on any, raise on all (this process's own error, or the first one's).

    ``fn`` must not enter a collective operation itself: a process that failed before it would leave
    the others waiting there. One small all-gather per call.
    """
    error: Optional[BaseException] = None
    value: Any = None
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001  every process must hear of it before any goes on
        if world_size() == 1:
            raise
        error = exc
    if world_size() == 1:
        return value
    dist = _dist()
    assert dist is not None
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, None if error is None else _describe(error))
    failed = [(r, part) for r, part in enumerate(parts) if part is not None]
    if failed:
        source, (kind, reason) = failed[0]
        raise mark_agreed(error if error is not None else AgreedFailure(source, kind, reason))
    return value


def claim_error_report() -> bool:
    """Whether this process prints a failure line: each of its own when alone; under a launcher, only the first.

    Within a process group the first process to claim (a counter in the group's store) prints and the
    others stay silent, so a failure that several processes meet is one line; before the group is
    joined, only rank 0 (``RANK``) prints, as every process then reads the same input.
    """
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        try:
            return dist.distributed_c10d._get_default_store().add("vlbench/error-lines", 1) == 1
        except Exception:  # noqa: BLE001  no store (another backend, or its host is gone): the main one reports
            return is_main()
    import os

    return os.environ.get("RANK", "0") == "0" or int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1


def fail_fast(message: str, code: int = 1) -> NoReturn:
    """End this process now, after a failure that the other processes cannot hear of (they wait in a collective).

    Prints ``error: message`` unless another process already reported, and exits with ``code``; the
    launcher (torchrun, accelerate launch, ``torch.multiprocessing``) then ends the other processes,
    and a process whose collective breaks because this one left ends the same way, silently. No
    process waits forever.
    """
    import os
    import sys

    if claim_error_report():
        print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
