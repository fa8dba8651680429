"""The comparison tables' content in plain text: one section per (task, dataset) and the legend under them.

Every output format (``vlbench.results.table`` for text formats, ``vlbench.results.leaderboard`` for HTML)
renders these same cells and escapes them for itself.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from vlbench.results import escape
from vlbench.results.aggregate import MIN_SEEDS, Table
from vlbench.results.robustness import robustness_cells, robustness_header, robustness_legend

__all__ = ["P_SEEDS_ITEMS", "P_ITEMS", "TEXT_COLUMNS", "significance_mark", "wide_sections", "legend",
           "p_text", "number_text"]

P_SEEDS_ITEMS = "p (seeds+items)"  # the test that marks Δ: seed and item variance both counted
P_ITEMS = "p (items only)"  # the paired per-item test over seed-averaged values: ignores seed variance
LEAKAGE = "leakage (text-only − prior)"
FLIPS = "flips (helped/hurt)"  # test items the image turned right / wrong (vlbench.results.flips)
TEXT_COLUMNS = ("baseline", "config", "family", "init")  # columns of words (left-aligned, not sorted as numbers)


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


def number_text(value: Optional[float], digits: int = 2, signed: bool = False) -> str:
    """A number as the tables print it: ``digits`` decimals, a sign when ``signed``, "—" when absent or not finite."""
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
        # with pretrained rows, every row says what it reads (family) and how it starts (init): the two effects
        has_init = any(r.get("init") == "pretrained" for r in rows)
        has_gpu = any(r["gpu_memory_mb"] is not None for r in rows)
        has_ablation = any(r["image_reliance_blank"] is not None for r in rows)
        has_flips = any(r.get("flips_helped") is not None and r["metric"] == tested for r in rows)
        has_emap = any(r.get("emap_gap") is not None and r["metric"] == tested for r in rows)
        header = ["baseline"] + (["config"] if has_config else []) + (["family", "init"] if has_init else [])
        header += ["params (trainable / total)", "n seeds", "train s", "eval s"]
        header += ["GPU peak MB"] if has_gpu else []
        header += metrics + [f"{tested} 95% CI"]
        header += [f"image reliance ({tested}: −blank / −shuffled)"] if has_ablation else []
        header += [FLIPS] if has_flips else []
        has_leakage = any(r.get("leakage") is not None and r["metric"] == tested for r in rows)
        emap_sizes = {r["emap_items"] for r in rows if r.get("emap_gap") is not None and r["metric"] == tested}
        on = f", {next(iter(emap_sizes))} items" if len(emap_sizes) == 1 and None not in emap_sizes else ""
        header += [f"EMAP ({tested}{on}: model − EMAP = gap)"] if has_emap else []
        header += [LEAKAGE] if has_leakage else []
        robust = robustness_header(rows, tested)
        header += robust
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
            cells = [r["baseline"]] + ([short] if has_config else []) + ([r["family"] or "—", r["init"]] if has_init else [])
            cells += [_params(r), _n(r), number_text(r["train_seconds"], 1), number_text(r["eval_seconds"], 1)]
            cells += [number_text(r["gpu_memory_mb"], 0)] if has_gpu else []
            if r["status"] == "failed":
                reason = escape.one_line(r["failure"] or "no reason recorded")
                cells += [f"failed: {reason}"] + ["—"] * (len(metrics) - 1 + 1)
                cells += ["—"] if has_ablation else []
                cells += ["—"] if has_flips else []
                cells += ["—"] if has_emap else []
                cells += ["—"] if has_leakage else []
                cells += ["—"] * len(robust)
                cells += ["—", "—", "—"]
            else:
                cells += [_value(line["metrics"][m]) if m in line["metrics"] else "" for m in metrics]
                cells += [f"[{number_text(t['ci_low'])}, {number_text(t['ci_high'])}]" if t and t["ci_low"] is not None else "—"]
                if has_ablation:
                    cells += [f"{number_text(t['image_reliance_blank'], signed=True)} / "
                              f"{number_text(t['image_reliance_shuffled'], signed=True)}"
                              if t and t["image_reliance_blank"] is not None else "—"]
                cells += [_flips(t)] if has_flips else []
                cells += [_emap_gap(t)] if has_emap else []
                cells += [_leakage(t)] if has_leakage else []
                cells += robustness_cells(t, robust)
                delta = t["delta_vs_reference"] if t else None
                cells += [number_text(delta, signed=True) + (significance_mark(t["p_value"]) if t else ""),
                          p_text(t["p_value"]) if t else "—", p_text(t["p_value_items"]) if t else "—"]
            body.append({"cells": cells, "row": r, "tested": t, "metrics": line["metrics"]})
        out.append({"task": task, "dataset": dataset, "header": header, "body": body, "metrics": metrics,
                    "tested": tested, "reference": reference, "rows": rows, "has_config": has_config})
    return out


def _flips(row: Optional[dict[str, Any]]) -> str:
    """``helped / hurt``: mean counts over seeds of test items the image turned right / wrong, or —."""
    if not row or row.get("flips_helped") is None:
        return "—"
    return f"{number_text(row['flips_helped'], 1)} / {number_text(row['flips_hurt'], 1)}"


def _emap_gap(row: Optional[dict[str, Any]]) -> str:
    """``model − EMAP = +gap [low, high]`` (means over seeds; 95% t-interval of the gap), the interval left out
    with one seed, or —."""
    if not row or row.get("emap_gap") is None:
        return "—"
    text = f"{number_text(row['emap_model'])} − {number_text(row['emap'])} = {number_text(row['emap_gap'], signed=True)}"
    if row.get("emap_gap_ci_low") is not None:
        text += f" [{number_text(row['emap_gap_ci_low'], signed=True)}, {number_text(row['emap_gap_ci_high'], signed=True)}]"
    return text


def _leakage(row: Optional[dict[str, Any]]) -> str:
    """A text-only row's score minus the data's prior, flagged when it is above the text-only ceiling."""
    if not row or row.get("leakage") is None:
        return "—"
    text = number_text(row["leakage"], signed=True)
    if row.get("above_text_ceiling"):
        text += f" (above the text-only ceiling {number_text(row['question_only_ceiling'])})"
    return text


def p_text(p: Optional[float]) -> str:
    """A p-value as the tables print it: three decimals, "<0.001" below that, "—" when absent."""
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
        "train s: optimizer steps only (no validation); eval s: validation, test, ablation, EMAP and robustness "
        "passes.",
    ]
    if any(r.get("emap_gap") is not None for r in table.rows):
        lines.insert(-1, "EMAP: the model's score minus the score of its additive projection (EMAP, Hessel & Lee "
                     "2020) on the same seeded test items: the model's score on them, EMAP's, and the gap, means over seeds "
                     "[the gap's 95% t-interval]; a gap near 0: the model's use of the image needs no interaction with "
                     "the text (docs/results.md).")
    if any(r.get("flips_helped") is not None for r in table.rows):
        lines.insert(-1, f"{FLIPS}: test items right with the real image and wrong with it blanked / wrong with the "
                     "real image and right blanked (right: at least half the item's full score), mean count over seeds; "
                     "helped − hurt is the change in items right. Examples per question type: the leaderboard page.")
    if any(r.get("leakage") is not None for r in table.rows):
        lines.insert(-1, f"{LEAKAGE}: MMStar's leakage, a model that reads only the question minus the data's prior "
                     "(top training answer per question type, `vlbench data stats`); flagged when the score is above "
                     "the best answer per exact question string chosen on test, which no model reading only the "
                     "question can reach: something leaked (test answers, the image through the text). MMStar's "
                     "multimodal gain is the Δ column of a joint model whose reference is its own text-only twin.")
    lines[-1:-1] = robustness_legend(table.rows)
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
