"""Render aggregated rows as rich, Markdown, CSV, LaTeX, JSON or HTML; every record string escaped for its format."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

from vlbench.errors import VLBenchError
from vlbench.results import escape
from vlbench.results.aggregate import Table, aggregate
from vlbench.results.robustness import ROBUSTNESS_FIELDS
from vlbench.results.sections import P_ITEMS, P_SEEDS_ITEMS, TEXT_COLUMNS, legend, significance_mark, wide_sections

__all__ = ["aggregate", "render", "FORMATS", "LONG_FIELDS", "significance_mark", "wide_sections", "legend",
           "P_SEEDS_ITEMS", "P_ITEMS"]

FORMATS = ("rich", "md", "csv", "latex", "json", "html")

LONG_FIELDS = ["task", "dataset", "baseline", "config", "config_fields", "config_hash", "family", "init", "metric", "primary", "status", "n",
               "seeds", "failed_seeds", "failure", "mean", "std", "ci_low", "ci_high", "reference",
               "delta_vs_reference", "delta_ci_low", "delta_ci_high", "p_value", "p_value_items",
               "test", "image_reliance_blank",
               "image_reliance_shuffled", "emap_items", "emap_model", "emap", "emap_gap", "emap_gap_ci_low",
               "emap_gap_ci_high", "emap_seeds", "flips_helped", "flips_hurt", "flips_seeds", "text_only", "question_only_prior", "question_only_ceiling", "leakage",
               "above_text_ceiling", *ROBUSTNESS_FIELDS, "trainable_params", "total_params", "train_seconds", "eval_seconds",
               "gpu_memory_mb", "versions"]


def _markdown(table: Table) -> str:
    out = []
    for s in wide_sections(table):
        out.append(f"### {escape.markdown_cell(s['task'])} on {escape.markdown_cell(s['dataset'])}\n")
        out.append("| " + " | ".join(escape.markdown_cell(h) for h in s["header"]) + " |")
        out.append("|" + "|".join("---" if h in TEXT_COLUMNS else "---:" for h in s["header"]) + "|")
        out += ["| " + " | ".join(escape.markdown_cell(c) for c in b["cells"]) + " |" for b in s["body"]]
        out.append("")
    out += [f"- {escape.markdown_cell(line)}" for line in legend(table)]
    return "\n".join(out) + "\n"


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def _json(table: Table) -> str:
    return json.dumps([_strict({k: r.get(k) for k in LONG_FIELDS}) for r in table.rows], indent=2, allow_nan=False)


def _csv(table: Table) -> str:
    import pandas as pd

    rows = []
    for r in table.rows:
        cells = {}
        for k in LONG_FIELDS:
            v = _strict(r.get(k))
            if isinstance(v, list):
                v = "; ".join(str(x) for x in v)
            cells[k] = None if v is None else escape.csv_cell(v) if isinstance(v, str) else v
        rows.append(cells)
    # object columns keep ints as ints and None as an empty cell, as the long format promises
    frame = pd.DataFrame(rows, columns=list(LONG_FIELDS), dtype=object)
    return frame.to_csv(index=False, lineterminator="\n")


def _latex(table: Table) -> str:
    out = ["% requires \\usepackage{booktabs}"]
    for s in wide_sections(table):
        header = s["header"]
        metric_cols = {i for i, h in enumerate(header) if h in s["metrics"]}
        best: dict[int, float] = {}
        for b in s["body"]:
            for i in metric_cols:
                r = b["metrics"].get(header[i])
                if r is not None and r["mean"] is not None:
                    best[i] = max(best.get(i, -math.inf), round(r["mean"], 2))
        out.append(f"% {escape.one_line(s['task'])} on {escape.one_line(s['dataset'])}")
        out.append("\\begin{tabular}{" + "".join("l" if h in TEXT_COLUMNS else "r" for h in header) + "}")
        out.append("\\toprule")
        out.append(" & ".join(escape.latex_cell(h) for h in header) + " \\\\")
        out.append("\\midrule")
        for b in s["body"]:
            cells = []
            for i, c in enumerate(b["cells"]):
                text = escape.latex_cell(c)
                if i in metric_cols and b["row"]["status"] != "failed":
                    r = b["metrics"].get(header[i])
                    if r is not None and r["mean"] is not None and round(r["mean"], 2) == best.get(i):
                        text = f"\\textbf{{{text}}}"
                if header[i].startswith("Δ"):  # the Δ column: marks as superscripts
                    text = text.replace("**", "$^{**}$") if "**" in text else text.replace("*", "$^{*}$")
                cells.append(text)
            out.append(" & ".join(cells) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out.append("")
    notes = ["best mean per metric column in bold; $^{*}$ $p<0.05$, $^{**}$ $p<0.01$ (seeds+items test against "
             "the reference baseline)."] + [escape.latex_cell(line) for line in legend(table)]
    out.append("\\par\\smallskip{\\footnotesize " + " \\\\\n".join(notes) + "}")
    return "\n".join(out) + "\n"


def _html(table: Table) -> str:
    from vlbench.results.leaderboard import html_tables

    return html_tables(table)


def _rich(table: Table) -> Any:
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    parts: list[Any] = []
    for s in wide_sections(table):
        # Text objects are never parsed as markup: a name like "[/x]" prints as itself
        out = RichTable(title=Text(f"{escape.one_line(s['task'])} on {escape.one_line(s['dataset'])}"),
                        title_justify="left")
        for h in s["header"]:
            out.add_column(Text(h), justify="left" if h in TEXT_COLUMNS else "right",
                           no_wrap=h == "baseline")
        for b in s["body"]:
            out.add_row(*(Text(escape.one_line(c), style="red" if c.startswith("failed") else "") for c in b["cells"]))
        parts.append(out)
    parts += [Text(escape.one_line(line), style="dim") for line in legend(table)]
    return Group(*parts)


def render(table: Table | Iterable[dict[str, Any]], fmt: str = "rich") -> Any:
    """Render an aggregated :class:`Table` (or records, aggregated first) in one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise VLBenchError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if not isinstance(table, Table):
        table = aggregate(table)
    return {"md": _markdown, "csv": _csv, "latex": _latex, "json": _json, "html": _html, "rich": _rich}[fmt](table)
