"""Render aggregated rows as rich, Markdown, CSV, LaTeX, JSON or HTML; every record string escaped for its format."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Optional

from vlbench.errors import VLBenchError
from vlbench.results import escape
from vlbench.results.aggregate import MIN_SEEDS, Table, aggregate

__all__ = ["aggregate", "render", "FORMATS", "LONG_FIELDS", "significance_mark", "wide_sections", "legend",
           "P_SEEDS_ITEMS", "P_ITEMS"]

FORMATS = ("rich", "md", "csv", "latex", "json", "html")
P_SEEDS_ITEMS = "p (seeds+items)"  # the test that marks Δ: seed and item variance both counted
P_ITEMS = "p (items only)"  # the paired per-item test over seed-averaged values: ignores seed variance

LONG_FIELDS = ["task", "dataset", "baseline", "config", "config_fields", "config_hash", "family", "metric", "primary", "status", "n",
               "seeds", "failed_seeds", "failure", "mean", "std", "ci_low", "ci_high", "reference",
               "delta_vs_reference", "delta_ci_low", "delta_ci_high", "p_value", "p_value_items",
               "test", "image_reliance_blank",
               "image_reliance_shuffled", "trainable_params", "total_params", "train_seconds", "eval_seconds",
               "gpu_memory_mb", "versions"]


def significance_mark(p: Optional[float]) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else nothing."""
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _human(n: Optional[int]) -> str:
    if n is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _params(row: dict[str, Any]) -> str:
    trainable, total = row["trainable_params"], row["total_params"]
    if not total:
        return "0" if total == 0 else "—"
    share = f" ({100 * trainable / total:.1f}%)" if trainable != total else ""
    return f"{_human(trainable)} / {_human(total)}{share}"


def _num(value: Optional[float], digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _n(row: dict[str, Any]) -> str:
    text = str(row["n"])
    if row["status"] != "failed" and row["n"] < MIN_SEEDS:
        text += " (n<3)"
    if row["failed_seeds"]:
        text += f" +{len(row['failed_seeds'])} failed"
    return text


def _value(row: dict[str, Any], pm: str = "±") -> str:
    if row["mean"] is None:
        return "—"
    return f"{row['mean']:.2f} {pm} {row['std']:.2f}" if row["std"] is not None else f"{row['mean']:.2f}"


def wide_sections(table: Table) -> list[dict[str, Any]]:
    """One section per (task, dataset): header, lines of cells (plain text, unescaped) and the raw rows."""
    sections: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table.rows:
        sections.setdefault((row["task"], row["dataset"]), []).append(row)
    out = []
    for (task, dataset), rows in sections.items():
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["status"] != "failed"))
        # the tested metric: the primary one, or the only one left by --metric
        tested = next((m for m in metrics if any(r["primary"] and r["metric"] == m for r in rows)),
                      metrics[0] if metrics else "")
        reference = next((r["reference"] for r in rows if r["reference"]), None)
        has_config = any(r["config"] for r in rows)
        has_gpu = any(r["gpu_memory_mb"] is not None for r in rows)
        has_ablation = any(r["image_reliance_blank"] is not None for r in rows)
        header = ["baseline"] + (["config"] if has_config else []) + ["params (trainable / total)", "n seeds",
                                                                        "train s", "eval s"]
        header += ["GPU peak MB"] if has_gpu else []
        header += metrics + [f"{tested} 95% CI"]
        header += [f"image reliance ({tested}: −blank / −shuffled)"] if has_ablation else []
        header += [f"Δ {tested} vs {reference}", P_SEEDS_ITEMS, P_ITEMS]
        lines: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            key = (r["baseline"], r["config_hash"])
            line = lines.get(key)
            if line is None:
                line = lines[key] = {"row": r, "metrics": {}, "tested": None}
            line["metrics"][r["metric"]] = r
            if r["metric"] == tested:
                line["tested"] = r
        body = []
        for line in lines.values():
            r, t = line["row"], line["tested"]
            fields = r["config_fields"]
            short = ", ".join(fields[:3]) + (f" (+{len(fields) - 3} more)" if len(fields) > 3 else "")
            cells = [r["baseline"]] + ([short] if has_config else []) + [
                _params(r), _n(r), _num(r["train_seconds"], 1), _num(r["eval_seconds"], 1)]
            cells += [_num(r["gpu_memory_mb"], 0)] if has_gpu else []
            if r["status"] == "failed":
                reason = escape.one_line(r["failure"] or "no reason recorded")
                cells += [f"failed: {reason}"] + ["—"] * (len(metrics) - 1 + 1)
                cells += ["—"] if has_ablation else []
                cells += ["—", "—", "—"]
            else:
                cells += [_value(line["metrics"][m]) if m in line["metrics"] else "" for m in metrics]
                cells += [f"[{_num(t['ci_low'])}, {_num(t['ci_high'])}]" if t and t["ci_low"] is not None else "—"]
                if has_ablation:
                    cells += [f"{_num(t['image_reliance_blank'], signed=True)} / "
                              f"{_num(t['image_reliance_shuffled'], signed=True)}"
                              if t and t["image_reliance_blank"] is not None else "—"]
                delta = t["delta_vs_reference"] if t else None
                cells += [_num(delta, signed=True) + (significance_mark(t["p_value"]) if t else ""),
                          _p(t["p_value"]) if t else "—", _p(t["p_value_items"]) if t else "—"]
            body.append({"cells": cells, "row": r, "tested": t, "metrics": line["metrics"]})
        out.append({"task": task, "dataset": dataset, "header": header, "body": body, "metrics": metrics,
                    "tested": tested, "reference": reference, "rows": rows, "has_config": has_config})
    return out


def _p(p: Optional[float]) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def legend(table: Table) -> list[str]:
    """Footnotes every format prints under its table (plain text, unescaped)."""
    lines = [
        "mean ± sample std over seeds; 95% CI: Student t over seeds. Rows aggregate one config hash each.",
        "Δ: difference of means from the task's reference baseline on the same test items. "
        f"{P_SEEDS_ITEMS}: two-sided t-test of Δ whose variance counts both the training seeds and the test items "
        "(two-way ANOVA variance components: each baseline's between-seed variance plus the paired item variance; "
        "Satterthwaite degrees of freedom; a corpus metric's item variance by a paired bootstrap of its sentence "
        "statistics); needs 2+ seeds of each baseline; * p<0.05, ** p<0.01 on Δ come from this test.",
        f"{P_ITEMS}: two-sided paired approximate randomization over test items of per-item scores (or a corpus "
        "metric's sentence statistics) averaged over seeds; it ignores how much the seeds disagree, so it is "
        "smaller than the seeds+items p when seeds differ and is not a finding on its own.",
        f"n<3: fewer than {MIN_SEEDS} seeds; the spread is not estimated well and a Δ is not a finding.",
        "image reliance: the trained model's score with real images minus its score with blank images / with "
        "images shuffled across test examples.",
        "train s: optimizer steps only (no validation); eval s: validation, test and ablation passes.",
    ]
    untested = sorted({f"{r['metric']}: {r['test'][len('not tested: '):]}" for r in table.rows
                       if r["test"] and r["test"].startswith("not tested")})
    lines += [f"not tested — {u}" for u in untested]
    few = sorted({r["baseline"] for r in table.rows if r["test"] and "p_value: not tested" in r["test"]})
    if few:
        lines.append(f"{P_SEEDS_ITEMS} not computed (fewer than 2 seeds of it or of its reference): {', '.join(few)}.")
    if table.mixes_versions:
        parts = "; ".join(f"{k} ({n} records)" for k, n in sorted(table.versions.items()))
        lines.append(f"warning: these records come from different package/code versions: {parts}.")
    lines += table.notes
    return lines


def _markdown(table: Table) -> str:
    out = []
    for s in wide_sections(table):
        out.append(f"### {escape.markdown_cell(s['task'])} on {escape.markdown_cell(s['dataset'])}\n")
        out.append("| " + " | ".join(escape.markdown_cell(h) for h in s["header"]) + " |")
        out.append("|" + "|".join("---" if h in ("baseline", "config") else "---:" for h in s["header"]) + "|")
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


def _tex(text: str) -> str:
    """Escaped text with the table's own symbols written the LaTeX way (works under pdflatex)."""
    out = escape.latex_text(text)
    for symbol, tex in (("±", "$\\pm$"), ("−", "$-$"), ("—", "---"), ("Δ", "$\\Delta$")):
        out = out.replace(symbol, tex)
    return out


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
        out.append("\\begin{tabular}{l" + "r" * (len(header) - 1) + "}")
        out.append("\\toprule")
        out.append(" & ".join(_tex(h) for h in header) + " \\\\")
        out.append("\\midrule")
        for b in s["body"]:
            cells = []
            for i, c in enumerate(b["cells"]):
                text = _tex(c)
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
             "the reference baseline)."] + [_tex(line) for line in legend(table)]
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
            out.add_column(Text(h), justify="left" if h in ("baseline", "config") else "right",
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
