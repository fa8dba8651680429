"""The in-process executor: every run of the request, one after another, in this process."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["run_locally"]


def run_locally(request: Any, echo: Callable[[str], None]) -> Any:
    """Today's loop: ``run_task`` over the whole request (data and tokenizer shared by every run)."""
    from vlbench.runner import run_task

    return run_task(request, echo=echo)
