"""Progress bars for evaluation passes.

Task types run their evaluation loops without knowing about the command line's display; the runner
opens :func:`evaluation_progress` around a run, and every loop that goes through :func:`track` then
shows a bar under the run's label. Outside such a block :func:`track` is a plain pass-through.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Optional, TypeVar

__all__ = ["evaluation_progress", "track"]

T = TypeVar("T")
_ACTIVE: ContextVar[Optional[tuple[Any, str]]] = ContextVar("vlbench_evaluation_progress", default=None)


@contextlib.contextmanager
def evaluation_progress(progress: Any, label: str) -> Iterator[None]:
    """Show evaluation loops run inside this block as bars of ``progress`` (a rich Progress; None: no bars)."""
    token = _ACTIVE.set((progress, label)) if progress is not None else None
    try:
        yield
    finally:
        if token is not None:
            _ACTIVE.reset(token)


def track(items: Iterable[T], total: int, what: str) -> Iterator[T]:
    """Yield ``items``, advancing a bar named ``<label> <what>`` when an evaluation progress is open."""
    active = _ACTIVE.get()
    if active is None or total <= 0:
        yield from items
        return
    progress, label = active
    bar = progress.add_task(f"{label} {what}", total=total)
    try:
        for item in items:
            yield item
            progress.advance(bar)
    finally:
        progress.remove_task(bar)
