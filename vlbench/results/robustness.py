"""The robustness suites in the tables: means over seeds of each record's ``robustness`` block, and their cells.

A row gets the clean score the suites started from, the mean over corruptions and severities, the relative
drop from clean, the mean over the rates of each question perturbation, and the robust score at each PGD
budget. A model that reads no image is marked ``text-only`` in the corruption and attack cells: it cannot
be affected, so it is not run (docs/robustness.md).
"""

from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["ROBUSTNESS_FIELDS", "TEXT_ONLY_CELL", "robustness_fields", "robustness_header", "robustness_cells",
           "severity_curves", "robustness_legend"]

ROBUSTNESS_FIELDS = ("robust_seeds", "robust_clean", "robust_corrupted", "robust_relative_drop", "robust_severities",
                     "robust_by_severity", "robust_typos", "robust_word_dropout", "robust_pgd_budgets", "robust_pgd",
                     "robust_text_only", "robust_attack_note")
TEXT_ONLY_CELL = "text-only"


def _mean(values: list[Any]) -> Optional[float]:
    known = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _same(values: list[Any]) -> Optional[Any]:
    return values[0] if values and all(v == values[0] for v in values) else None


def _per_position(lists: list[list[Any]]) -> Optional[list[Optional[float]]]:
    if not lists or any(not isinstance(x, list) or len(x) != len(lists[0]) for x in lists):
        return None
    return [_mean([x[i] for x in lists]) for i in range(len(lists[0]))]


def robustness_fields(records: list[dict[str, Any]], metric: Optional[str]) -> dict[str, Any]:
    """The seeds' robustness blocks of ``metric`` as row fields (None where no seed has one)."""
    blocks = [r["robustness"] for r in records if isinstance(r.get("robustness"), dict)
              and r["robustness"].get("metric") == metric and metric is not None]
    if not blocks:
        return dict.fromkeys(ROBUSTNESS_FIELDS)
    corruptions = [b.get("corruptions") or {} for b in blocks]
    attacks = [b.get("attack") or {} for b in blocks]
    texts = [b.get("text") or {} for b in blocks]
    applied = [c for c in corruptions if c.get("applies")]
    attacked = [a for a in attacks if a.get("applies")]
    text_only = any(c.get("text_only") for c in corruptions + attacks)
    severities = _same([c.get("severities") for c in applied])
    budgets = _same([a.get("budgets") for a in attacked])
    notes = sorted({a["reason"] for a in attacks if a.get("applies") is False and not a.get("text_only")
                    and a.get("reason")})

    def text_mean(kind: str) -> Optional[float]:
        scores = [t[kind].get("scores") for t in texts if t.get("applies") and isinstance(t.get(kind), dict)]
        return _mean([_mean(s) for s in scores]) if scores and len(scores) == len(blocks) else None

    return {
        "robust_seeds": len(blocks),
        "robust_clean": _mean([b.get("clean") for b in blocks]),
        "robust_corrupted": _mean([c.get("mean") for c in applied]) if len(applied) == len(blocks) else None,
        "robust_relative_drop": (_mean([c.get("relative_drop") for c in applied])
                                 if len(applied) == len(blocks) else None),
        "robust_severities": severities,
        "robust_by_severity": (_per_position([c.get("by_severity") for c in applied])
                               if severities is not None and len(applied) == len(blocks) else None),
        "robust_typos": text_mean("typos"),
        "robust_word_dropout": text_mean("word_dropout"),
        "robust_pgd_budgets": budgets,
        "robust_pgd": (_per_position([a.get("robust") for a in attacked])
                       if budgets is not None and len(attacked) == len(blocks) else None),
        "robust_text_only": text_only,
        "robust_attack_note": "; ".join(notes) or None,
    }


def _budget(b: float) -> str:
    return f"{b:g}/255"


def robustness_header(rows: list[dict[str, Any]], tested: str) -> list[str]:
    """The robustness columns of a section (none when no row of ``tested`` has a robustness block)."""
    mine = [r for r in rows if r.get("robust_seeds") and r["metric"] == tested]
    if not mine:
        return []
    budgets = sorted({b for r in mine for b in (r.get("robust_pgd_budgets") or [])})
    header = [f"clean ({tested}, suites)", "corrupted (mean)", "corruption drop", "typos", "word dropout"]
    if budgets or any(r.get("robust_text_only") or r.get("robust_attack_note") for r in mine):
        header += [f"PGD {_budget(b)}" for b in budgets] or ["PGD"]
    return header


def _num(value: Optional[float], digits: int = 2) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def robustness_cells(row: Optional[dict[str, Any]], header: list[str]) -> list[str]:
    """The cells of ``header`` (from :func:`robustness_header`) for one row's tested metric."""
    if not header:
        return []
    if not row or not row.get("robust_seeds"):
        return ["—"] * len(header)
    text_only = bool(row.get("robust_text_only"))
    drop = row.get("robust_relative_drop")
    cells = [_num(row.get("robust_clean")),
             TEXT_ONLY_CELL if text_only else _num(row.get("robust_corrupted")),
             TEXT_ONLY_CELL if text_only else ("—" if drop is None else f"{100 * drop:+.1f}%"),
             _num(row.get("robust_typos")), _num(row.get("robust_word_dropout"))]
    robust = dict(zip(row.get("robust_pgd_budgets") or [], row.get("robust_pgd") or []))
    for column in header[5:]:
        if text_only:
            cells.append(TEXT_ONLY_CELL)
        elif row.get("robust_attack_note"):
            cells.append("n/a")
        else:
            budget = column.removeprefix("PGD ").removesuffix("/255")
            value = next((v for b, v in robust.items() if _budget(b) == f"{budget}/255"), None)
            cells.append(_num(value))
    return cells


def severity_curves(rows: list[dict[str, Any]], tested: str, label: Any) -> list[tuple[str, list[tuple[int, float]]]]:
    """(name, [(severity, mean over corruptions)]) per row with corruption scores; severity 0 is the clean score."""
    curves = []
    for r in rows:
        if r["metric"] != tested or not r.get("robust_by_severity") or r.get("robust_clean") is None:
            continue
        points = [(0, r["robust_clean"])] + [(int(s), v) for s, v in zip(r["robust_severities"], r["robust_by_severity"])
                                             if v is not None]
        curves.append((label(r), points))
    return curves


def robustness_legend(rows: list[dict[str, Any]]) -> list[str]:
    """Legend lines for the robustness columns (empty when no row has them)."""
    if not any(r.get("robust_seeds") for r in rows):
        return []
    lines = ["robustness (docs/robustness.md), means over seeds: clean (suites) is the test score the suites start "
             "from; corrupted: mean over 5 ImageNet-C corruptions (Gaussian noise, Gaussian blur, JPEG, brightness, "
             "contrast) and their severities; corruption drop: (clean − corrupted) / clean; typos, word dropout: mean "
             "over three rates; PGD ε/255: robust score under a 10-step L∞ PGD attack on the pixels (Madry et al. "
             "2018); text-only: the model reads no image, unaffected by construction (not run). No dataset supplies "
             "rephrased questions, so rephrasings are no condition."]
    notes = sorted({r["robust_attack_note"] for r in rows if r.get("robust_attack_note")})
    lines += [f"PGD n/a: {note}." for note in notes]
    return lines
