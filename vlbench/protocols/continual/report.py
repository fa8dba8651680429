"""The continual table (one row per baseline and strategy, mean ± std over seeds) and accuracy-matrix heat maps."""

from __future__ import annotations

import io
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from vlbench.errors import VLBenchError

__all__ = ["load_summaries", "continual_table", "plot_heatmap", "write_report"]

_COLUMNS = (("average_accuracy", "ACC"), ("backward_transfer", "BWT"), ("forward_transfer", "FWT"),
            ("forgetting", "forgetting"))


def load_summaries(folder: Path) -> list[dict[str, Any]]:
    """Every continual summary under ``folder/summaries`` (each marked with its file in ``_path``)."""
    summaries = []
    for path in sorted((Path(folder) / "summaries").glob("*.json")):
        if ".cfg-" in path.name:  # summaries of earlier configs, kept but not mixed into the table
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "continual":
            data["_path"] = str(path)  # where it was read, as read_records marks run records
            summaries.append(data)
    if not summaries:
        raise VLBenchError(f"no continual summaries under {str(folder)!r}; run `vlbench continual` first.")
    return summaries


def _groups(summaries: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        groups[(s["baseline"], s["strategy"])].append(s)
    for (baseline, strategy), items in groups.items():
        if len({s["config_hash"] for s in items}) > 1:
            raise VLBenchError(f"{baseline} / {strategy}: summaries of different configs in one folder; "
                               f"keep each configuration in its own results folder.")
    return groups


def _cell(values: list[Optional[float]]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    mean = statistics.fmean(present)
    return f"{mean:.2f} ± {statistics.stdev(present):.2f}" if len(present) > 1 else f"{mean:.2f}"


def continual_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown: baseline, strategy, ACC, BWT, FWT, forgetting (mean ± std over seeds), seeds, train seconds."""
    metric = summaries[0]["metric"]
    lines = [f"| baseline | strategy | ACC ({metric}) | BWT | FWT | forgetting | final row ({', '.join(summaries[0]['stages'])}) | seeds | train s |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    order = {name: i for i, name in enumerate(("naive", "ewc", "replay", "heads", "isolated", "joint"))}
    for (baseline, strategy), items in sorted(_groups(summaries).items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9))):
        cells = [_cell([s["metrics"][key] for s in items]) for key, _ in _COLUMNS]
        final = [statistics.fmean(s["matrix"][-1][j] for s in items) for j in range(len(items[0]["stages"]))]
        lines.append(f"| {baseline} | {strategy} | " + " | ".join(cells)
                     + f" | {' / '.join(f'{v:.1f}' for v in final)} | {len(items)} | "
                     f"{statistics.fmean(s['train_seconds'] for s in items):.0f} |")
    return "\n".join(lines)


def plot_heatmap(items: list[dict[str, Any]], path: Path) -> Path:
    """PNG heat map of the seed-mean accuracy matrix (rows: after stage i; columns: stage j), values printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vlbench.io import atomic_write_bytes

    rows = len(items[0]["matrix"])
    stages = items[0]["stages"]
    mean = [[statistics.fmean(s["matrix"][i][j] for s in items) for j in range(len(stages))] for i in range(rows)]
    fig, ax = plt.subplots(figsize=(1.1 * len(stages) + 2.2, 0.8 * rows + 1.8), dpi=120)
    image = ax.imshow(mean, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i in range(rows):
        for j in range(len(stages)):
            ax.text(j, i, f"{mean[i][j]:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if mean[i][j] < 60 else "black")
    ax.set_xticks(range(len(stages)), stages, rotation=30)
    ax.set_yticks(range(rows), [f"after {r}" for r in items[0]["matrix_rows"]])
    ax.set_xlabel(f"test stage ({items[0]['metric']})")
    ax.set_title(f"{items[0]['baseline']} / {items[0]['strategy']} ({len(items)} seed{'s' if len(items) > 1 else ''})")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_report(folder: Path) -> tuple[str, list[Path]]:
    """Write ``continual-table.md`` and one heat map per (baseline, strategy) into a sequence folder."""
    from vlbench.io import atomic_write_text
    from vlbench.results.records import safe_name

    summaries = load_summaries(folder)
    table = continual_table(summaries)
    atomic_write_text(Path(folder) / "continual-table.md", table + "\n")
    plots = [plot_heatmap(items, Path(folder) / f"heatmap-{safe_name(baseline)}-{strategy}.png")
             for (baseline, strategy), items in sorted(_groups(summaries).items())]
    return table, plots
