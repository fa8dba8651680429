"""``vlbench table``: rebuild the comparison table from run records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vlbench.cli.main import app, wide_console

__all__ = ["table"]


@app.command("table")
def table(
    results_dir: Path = typer.Argument(..., help="Folder of run records (as written by `vlbench run`)."),
    format: str = typer.Option("rich", "--format", "-f", help="rich, md, csv or json."),
    task: Optional[str] = typer.Option(None, "--task", help="Only this task."),
) -> None:
    """Aggregate records over seeds: mean ± std, n, parameters and the difference from the reference baseline."""
    from vlbench.errors import VLBenchError
    from vlbench.results.records import load_records
    from vlbench.results.table import FORMATS, aggregate, render

    if format not in FORMATS:
        raise VLBenchError(f"--format {format!r}: use one of {', '.join(FORMATS)}.")
    records = load_records(results_dir)
    if task:
        records = [r for r in records if r["task"] == task]
    if not records:
        raise VLBenchError(f"no run records under {str(results_dir)!r}" + (f" for task {task!r}" if task else "") + ".")
    out = render(aggregate(records), format)
    if format == "rich":
        wide_console().print(out)
    else:
        typer.echo(out, nl=not out.endswith("\n"))
