"""Comparison tables built from run records: mean ± std over seeds and the difference from the reference."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from typing import Any, Iterable

from vlbench.errors import VLBenchError

__all__ = ["aggregate", "render", "FORMATS"]

FORMATS = ("rich", "md", "csv", "json")


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, dataset, baseline, metric): mean, sample std (n-1), n seeds, params, time, delta."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(rec["task"], rec["dataset"], rec["baseline"])].append(rec)
    rows: list[dict[str, Any]] = []
    means: dict[tuple[str, str, str, str], float] = {}
    for (task, dataset, baseline), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: r["seed"])
        metric_names = list(dict.fromkeys(m for r in recs for m in r["test"]["metrics"]))
        for metric in metric_names:
            values = [float(r["test"]["metrics"][metric]) for r in recs if metric in r["test"]["metrics"]]
            mean, std = _mean_std(values)
            means[(task, dataset, baseline, metric)] = mean
            rows.append(
                {
                    "task": task,
                    "dataset": dataset,
                    "baseline": baseline,
                    "family": recs[0]["config"]["baseline"].get("family", ""),
                    "metric": metric,
                    "primary": metric == recs[0].get("primary_metric"),
                    "mean": mean,
                    "std": std,
                    "n": len(values),
                    "seeds": [r["seed"] for r in recs],
                    "trainable_params": recs[0]["parameters"]["trainable"],
                    "total_params": recs[0]["parameters"]["total"],
                    "train_seconds": statistics.fmean(r["timing"]["train_seconds"] for r in recs),
                    "peak_memory_mb": _peak_mb(recs),
                    "reference": recs[0]["config"]["task"].get("reference_baseline"),
                }
            )
    for row in rows:
        ref = means.get((row["task"], row["dataset"], row["reference"], row["metric"]))
        row["delta_vs_reference"] = None if ref is None or row["baseline"] == row["reference"] else row["mean"] - ref
    return rows


def _peak_mb(recs: list[dict[str, Any]]) -> float | None:
    peaks = [r["memory"]["peak_bytes"] for r in recs if r.get("memory")]
    return max(peaks) / 2**20 if peaks else None


def _fmt_params(row: dict[str, Any]) -> str:
    trainable, total = row["trainable_params"], row["total_params"]
    if not total:
        return "0"
    return f"{_human(trainable)} / {_human(total)}" + (f" ({100 * trainable / total:.1f}%)" if trainable != total else "")


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _fmt_value(row: dict[str, Any]) -> str:
    std = row["std"]
    return f"{row['mean']:.2f} ± {std:.2f}" if std is not None and not math.isnan(std) else f"{row['mean']:.2f}"


def _fmt_delta(row: dict[str, Any]) -> str:
    delta = row["delta_vs_reference"]
    return "—" if delta is None else f"{delta:+.2f}"


def _wide(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Pivot to one line per (task, dataset, baseline): params, seeds, every metric, delta of the primary."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    primary = next((r["metric"] for r in rows if r["primary"]), metrics[0] if metrics else "")
    header = ["task", "dataset", "baseline", "params (trainable / total)", "seeds", "train s", "peak MB", *metrics]
    header.append(f"Δ {primary} vs {rows[0]['reference']}" if rows else "Δ")
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["task"], r["dataset"], r["baseline"])
        line = lines.setdefault(
            key,
            {"base": [r["task"], r["dataset"], r["baseline"], _fmt_params(r), str(r["n"]), f"{r['train_seconds']:.0f}",
                      "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"], "m": {}, "d": "—"},
        )
        line["m"][r["metric"]] = _fmt_value(r)
        if r["metric"] == primary:
            line["d"] = _fmt_delta(r)
    body = [line["base"] + [line["m"].get(m, "") for m in metrics] + [line["d"]] for line in lines.values()]
    return header, body


def render(rows: list[dict[str, Any]], fmt: str = "rich") -> Any:
    """Render aggregated rows as a rich Table, Markdown, CSV or JSON text."""
    if fmt not in FORMATS:
        raise VLBenchError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        fields = ["task", "dataset", "baseline", "family", "metric", "mean", "std", "n", "trainable_params",
                  "total_params", "train_seconds", "peak_memory_mb", "reference", "delta_vs_reference"]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    header, body = _wide(rows)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"
    from rich.console import Group
    from rich.table import Table

    tables = []
    for key in dict.fromkeys((r["task"], r["dataset"]) for r in rows):
        header, body = _wide([r for r in rows if (r["task"], r["dataset"]) == key])
        table = Table(title=f"{key[0]} on {key[1]}", title_justify="left")
        for name in header[2:]:
            table.add_column(name, justify="left" if name == "baseline" else "right", no_wrap=name == "baseline")
        for cells in body:
            table.add_row(*cells[2:])
        tables.append(table)
    return Group(*tables)
