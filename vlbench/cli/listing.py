"""``vlbench list tasks|baselines|datasets|metrics``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from vlbench.cli.app import app, load_plugins, wide_console

__all__ = ["list_things", "KINDS"]

KINDS = ("tasks", "baselines", "datasets", "metrics", "models")


def _items(kind: str) -> list[dict]:
    from vlbench.registry import DATASETS, METRICS, MODELS
    from vlbench.specs import available_specs, load_baseline_spec, load_task_spec

    if kind == "tasks":
        out = []
        for name in available_specs("tasks"):
            spec = load_task_spec(name)
            out.append({"name": spec.name, "description": spec.description, "type": spec.type,
                        "dataset": spec.dataset, "primary_metric": spec.primary_metric})
        return out
    if kind == "baselines":
        out = []
        for name in available_specs("baselines"):
            spec = load_baseline_spec(name)
            out.append({"name": spec.name, "description": spec.description, "tasks": spec.tasks,
                        "model": spec.model, "family": spec.family, "pretrained": spec.pretrained,
                        "peft": (spec.peft or {}).get("method")})
        return out
    registry = {"datasets": DATASETS, "metrics": METRICS, "models": MODELS}[kind]
    return [{"name": e.name, "description": e.description} for e in registry.entries()]


@app.command("list")
def list_things(
    kind: str = typer.Argument(..., help="tasks, baselines, datasets, metrics or models."),
    format: str = typer.Option("rich", "--format", "-f", help="rich or json."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Python file registering extra types; repeatable."),
) -> None:
    """List what is registered or specified."""
    from vlbench.errors import VLBenchError
    from vlbench.registry import did_you_mean

    if kind not in KINDS:
        raise VLBenchError(f"cannot list {kind!r}.{did_you_mean(kind, list(KINDS))} Use one of: {', '.join(KINDS)}.")
    if format not in ("rich", "json"):
        raise VLBenchError(f"--format {format!r}: use rich or json.")
    load_plugins(plugin)
    items = _items(kind)
    if format == "json":
        typer.echo(json.dumps(items, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=kind)
    table.add_column("name")
    if kind == "baselines":
        table.add_column("tasks")
    table.add_column("description")
    for item in items:
        cells = [item["name"]] + ([", ".join(item["tasks"])] if kind == "baselines" else []) + [item["description"]]
        cells = [escape(c) for c in cells]  # descriptions may hold [brackets], e.g. vlbench[minilm]
        table.add_row(*cells)
    wide_console().print(table)
