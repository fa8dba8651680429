"""``vlbench efficiency`` (metric against labelled examples) and ``vlbench continual`` (learning in sequence)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from vlbench.cli.main import app, load_plugins, wide_console

__all__ = ["efficiency", "print_efficiency"]


def print_efficiency(results_dir: Path, task: str, metric: Optional[str], reference: Optional[str],
                     plot: Optional[Path], console: Any) -> None:
    """Print the data-efficiency table and gains for a results folder and write its plot."""
    from vlbench.protocols.efficiency import curves_from_records, plot_curves, render_efficiency
    from vlbench.results.records import load_records

    curves, metric = curves_from_records(load_records(results_dir), task, metric)
    table, notes = render_efficiency(curves, metric, reference)
    console.print(table, markup=False)
    for line in notes:
        console.print(line, markup=False)
    plot = plot or Path(results_dir) / f"efficiency-{task}.png"
    plot_curves(curves, metric, reference, plot, f"{task}: {metric} against labelled examples")
    console.print(f"plot -> {plot}", markup=False)


@app.command("efficiency")
def efficiency(
    results_dir: Path = typer.Argument(..., help="Folder of run records made with `vlbench run --train-fraction`."),
    task: str = typer.Option(..., "--task", "-t", help="Task name as written in the records."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Test metric to plot (default: the task's primary)."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Text-only baseline whose full-data score the others must match (default: the task spec's)."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG to write (default: DIR/efficiency-TASK.png)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra types; repeatable."),
) -> None:
    """Metric against labelled training examples per baseline (mean ± std over seeds), its plot and the gain."""
    load_plugins(plugin)
    if reference is None:
        from vlbench.errors import VLBenchError
        from vlbench.specs import load_task_spec

        try:
            reference = load_task_spec(task).reference_baseline
        except VLBenchError:
            reference = "text-bert"
    print_efficiency(results_dir, task, metric, reference, plot, wide_console())
