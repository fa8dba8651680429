"""The in-process executor: every run of the request, one after another, in this process."""

from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["run_locally"]


def run_locally(request: Any, echo: Callable[[str], None], on_error: Optional[Callable[[str, BaseException], None]] = None,
                warn: Optional[Callable[[str], None]] = None) -> Any:
    """``run_task`` over the whole request (data and tokenizer shared by every run)."""
    from vlbench.runner import run_task

    return run_task(request, echo=echo, on_error=on_error, warn=warn)
