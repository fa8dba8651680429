"""The Typer apps and what every command shares: consoles, plugin loading, the --debug flag.

Command modules import from here and attach their commands; ``vlbench.cli.main`` imports the command
modules and runs the app, so the imports point one way (main -> commands -> app).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

__all__ = ["app", "data_app", "load_plugins", "err_console", "wide_console", "debug_enabled", "path_arg"]

app = typer.Typer(
    name="vlbench",
    help="Benchmark joint image+text fine-tuning against text-only baselines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Build and inspect datasets.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(data_app, name="data")

OPTIONS: dict[str, object] = {"debug": False}
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def wide_console() -> Console:
    """A stdout console; tables piped to a file or CI log get 200 columns instead of rich's 80."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def load_plugins(plugin_files: Optional[list[str]] = None) -> None:
    """Import entry-point plugins and ``--plugin`` files (the registries load the built-ins themselves)."""
    from vlbench import registry

    registry.load_plugins(plugin_files, warn=lambda notice: err_console.print(f"warning: {notice}", markup=False))


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Benchmark joint image+text fine-tuning against text-only baselines."""
    OPTIONS["debug"] = debug


def debug_enabled() -> bool:
    """Whether ``--debug`` was given (commands print tracebacks of the errors they handle themselves)."""
    return bool(OPTIONS.get("debug"))


def path_arg(value: Any) -> Path:
    """The ``parser`` of every path option: an empty path, or one the file system cannot hold, is refused up front.

    (Typer turns ``--results-dir ""`` into ``Path(".")``, the current folder, unless the text is checked first.)
    """
    if isinstance(value, Path):  # a default
        return value
    from vlbench.io import path_problem

    problem = path_problem(str(value))
    if problem:
        raise typer.BadParameter(problem)
    return Path(value)
