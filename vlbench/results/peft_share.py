"""PEFT on a backbone: each method's trainable share and the share of full fine-tuning's gain it keeps.

For a PEFT system P, its full fine-tuning twin F (same model and settings, no PEFT) and the task's text-only
reference T, all scored on the same test items:

* trainable share = P's trainable parameters / F's (both counted in the records);
* P's and F's gain over T, each with its seed-and-item interval and p (:mod:`vlbench.results.seeditem`);
* share of F's gain kept = (P - T) / (F - T), with the interval of shares ``k`` whose contrast
  ``P - k F - (1 - k) T`` the seed-and-item contrast test does not reject (a Fieller-type interval,
  :func:`vlbench.results.claims.peft_claim.share_interval`).

The share is defined only where F's gain over T is significant; otherwise the row says why. Rendered as
Markdown, CSV or LaTeX (``vlbench peft``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from vlbench.errors import VLBenchError
from vlbench.results import escape
from vlbench.results.claims.peft_claim import share_interval
from vlbench.results.claims.systems import System, aligned_arrays, best_match, compare, full_twin, systems
from vlbench.results.sections import number_text, p_text

__all__ = ["ShareRow", "peft_shares", "render_shares", "SHARE_FORMATS"]

SHARE_FORMATS = ("md", "csv", "latex")
ALPHA = 0.05


@dataclass
class ShareRow:
    """One PEFT system beside its full fine-tuning twin and the text-only reference."""

    task: str
    dataset: str
    baseline: str
    method: str
    full: Optional[str]
    reference: Optional[str]
    seeds: list[int]
    metric: str
    mean: Optional[float]
    std: Optional[float]
    trainable: Optional[int]
    full_trainable: Optional[int] = None
    full_mean: Optional[float] = None
    reference_mean: Optional[float] = None
    gain: Optional[float] = None  # P - T
    gain_ci: tuple[Optional[float], Optional[float]] = (None, None)
    gain_p: Optional[float] = None
    full_gain: Optional[float] = None  # F - T
    full_gain_ci: tuple[Optional[float], Optional[float]] = (None, None)
    full_gain_p: Optional[float] = None
    kept: Optional[float] = None  # (P - T) / (F - T)
    kept_ci: tuple[Optional[float], Optional[float]] = (None, None)
    notes: list[str] = field(default_factory=list)

    @property
    def param_share(self) -> Optional[float]:
        return self.trainable / self.full_trainable if self.trainable and self.full_trainable else None


def _reference(system: System, pool: list[System], name: Optional[str]) -> Optional[System]:
    wanted = name or system.field("config", "task", "reference_baseline")
    return best_match(system, [s for s in pool if s.baseline == wanted]) if wanted else None


def _row(peft: System, pool: list[System], reference_name: Optional[str]) -> ShareRow:
    metric = peft.metric or ""
    full, reference = full_twin(peft, pool), _reference(peft, pool, reference_name)
    row = ShareRow(peft.task, peft.dataset, peft.baseline, str(peft.field("config", "baseline", "peft", "method")),
                   full.baseline if full else None, reference.baseline if reference else None, peft.seeds, metric,
                   peft.mean(metric), peft.std(metric), peft.trainable)
    if len(peft.seeds) < 3:
        row.notes.append(f"{len(peft.seeds)} seed{'s' if len(peft.seeds) != 1 else ''} only")
    if reference is not None:
        row.reference_mean = reference.mean(metric)
        gain, _ = compare(peft, reference, metric)  # without it the row shows no Δ; the share below says why
        if gain is not None:
            row.gain, row.gain_ci, row.gain_p = gain.delta, (gain.ci_low, gain.ci_high), gain.p_value
    if full is None:
        row.notes.append("no full fine-tuning twin (same model and settings, no PEFT) on the same data")
        return row
    row.full_trainable, row.full_mean = full.trainable, full.mean(metric)
    if reference is None:
        row.notes.append(f"no {reference_name or 'reference'} records on the same data")
        return row
    if reference.config_hash == full.config_hash:
        row.notes.append(f"its full twin {full.baseline} is the text-only reference: no gain over text-only to keep")
        return row
    full_gain, why = compare(full, reference, metric)
    if full_gain is None:
        row.notes.append(f"{full.baseline} against {reference.baseline}: {why}")
        return row
    row.full_gain, row.full_gain_ci, row.full_gain_p = (full_gain.delta, (full_gain.ci_low, full_gain.ci_high),
                                                        full_gain.p_value)
    if full_gain.delta <= 0 or full_gain.p_value >= ALPHA:
        row.notes.append(f"{full.baseline} has no significant gain over {reference.baseline} to keep "
                         f"(p {full_gain.p_value:.3g})")
        return row
    arrays, why = aligned_arrays([peft, full, reference], metric)
    if arrays is None or len(peft.records) < 2:  # the twin and the reference have 2+ seeds: compare ran
        row.notes.append(why or f"needs at least 2 seeds of {peft.baseline}")
        return row
    means = [s.mean(metric) for s in (peft, full, reference)]
    if None not in means:
        row.kept = (means[0] - means[2]) / (means[1] - means[2])
    row.kept_ci = share_interval(arrays, ALPHA)
    return row


def peft_shares(records: list[dict[str, Any]], reference: Optional[str] = None) -> list[ShareRow]:
    """One row per PEFT system (trainable, on the task's whole training data) of the records, in a fixed order."""
    pool = systems(records)
    peft = [s for s in pool if s.field("config", "baseline", "peft") and (s.trainable or 0) > 0]
    if not peft:
        raise VLBenchError("no PEFT run records (a baseline with a peft: block) among the records read.")
    return [_row(p, pool, reference) for p in peft]


def _percent(value: Optional[float]) -> str:
    return "—" if value is None else number_text(100 * value, 1) + "%"


def _interval(bounds: tuple[Optional[float], Optional[float]], percent: bool = False) -> str:
    low, high = bounds
    if low is None and high is None:
        return "—"
    show = _percent if percent else (lambda v: number_text(v, signed=True))
    return f"[{'open' if low is None else show(low)}, {'open' if high is None else show(high)}]"


HEADER = ["baseline", "method", "seeds", "trainable", "share of full's parameters", "score", "Δ vs text-only",
          "95% CI", "p", "full twin", "full's Δ vs text-only", "share of full's gain kept", "95% CI (kept)", "notes"]


def _cells(row: ShareRow) -> list[str]:
    score = "—" if row.mean is None else number_text(row.mean) + ("" if row.std is None else f" ± {row.std:.2f}")
    full_gain = "—" if row.full_gain is None else f"{row.full_gain:+.2f} (p {p_text(row.full_gain_p)})"
    return [row.baseline, row.method, ", ".join(str(s) for s in row.seeds),
            "—" if row.trainable is None else f"{row.trainable:,}", _percent(row.param_share), score,
            number_text(row.gain, signed=True), _interval(row.gain_ci), p_text(row.gain_p), row.full or "—", full_gain,
            _percent(row.kept), _interval(row.kept_ci, percent=True), "; ".join(row.notes)]


def _legend(rows: list[ShareRow]) -> list[str]:
    references = sorted({r.reference for r in rows if r.reference})
    return [
        "score: the task's primary test metric, mean ± std over seeds; Δ vs text-only: the PEFT run minus the text-only "
        f"reference ({', '.join(references) or 'none found'}), 95% interval and p from the seed-and-item t-test.",
        "share of full's parameters: the PEFT run's trainable parameters (new layers and head included) over its full "
        "fine-tuning twin's.",
        "share of full's gain kept: (PEFT − text-only) / (full − text-only), shown where full fine-tuning's gain is "
        f"significant (p < {ALPHA:g}); its 95% interval is every share k whose contrast PEFT − k·full − (1 − k)·text-only "
        "the seed-and-item contrast test does not reject (open: beyond −100%..200%).",
    ]


def _sections(rows: list[ShareRow]) -> dict[tuple[str, str, str], list[ShareRow]]:
    out: dict[tuple[str, str, str], list[ShareRow]] = {}
    for row in rows:
        out.setdefault((row.task, row.dataset, row.metric), []).append(row)
    return out


def _markdown(rows: list[ShareRow]) -> str:
    out = []
    for (task, dataset, metric), part in _sections(rows).items():
        out.append(f"### PEFT on {escape.markdown_cell(task)} / {escape.markdown_cell(dataset)} ({escape.markdown_cell(metric)})\n")
        out.append("| " + " | ".join(escape.markdown_cell(h) for h in HEADER) + " |")
        out.append("|" + "|".join("---" if h in ("baseline", "method", "full twin", "notes") else "---:" for h in HEADER) + "|")
        out += ["| " + " | ".join(escape.markdown_cell(c) for c in _cells(r)) + " |" for r in part]
        out.append("")
    out += [f"- {escape.markdown_cell(line)}" for line in _legend(rows)]
    return "\n".join(out) + "\n"


def _csv(rows: list[ShareRow]) -> str:
    import pandas as pd

    flat = []
    for row in rows:
        values = asdict(row)
        for name in ("gain_ci", "full_gain_ci", "kept_ci"):
            low, high = values.pop(name)
            values[name.replace("_ci", "_ci_low")], values[name.replace("_ci", "_ci_high")] = low, high
        values["seeds"] = "; ".join(str(s) for s in row.seeds)
        values["notes"] = "; ".join(row.notes)
        values["param_share"] = row.param_share
        flat.append({k: escape.csv_cell(v) if isinstance(v, str) else v for k, v in values.items()})
    return pd.DataFrame(flat, dtype=object).to_csv(index=False, lineterminator="\n")


def _latex(rows: list[ShareRow]) -> str:
    out = ["% requires \\usepackage{booktabs}"]
    for (task, dataset, metric), part in _sections(rows).items():
        out.append(f"% PEFT on {escape.one_line(task)} / {escape.one_line(dataset)} ({escape.one_line(metric)})")
        out.append("\\begin{tabular}{" + "".join("l" if h in ("baseline", "method", "full twin", "notes") else "r"
                                                 for h in HEADER) + "}")
        out += ["\\toprule", " & ".join(escape.latex_cell(h) for h in HEADER) + " \\\\", "\\midrule"]
        out += [" & ".join(escape.latex_cell(c) for c in _cells(r)) + " \\\\" for r in part]
        out += ["\\bottomrule", "\\end{tabular}", ""]
    out.append("\\par\\smallskip{\\footnotesize " + " \\\\\n".join(escape.latex_cell(line) for line in _legend(rows)) + "}")
    return "\n".join(out) + "\n"


def render_shares(rows: list[ShareRow], fmt: str) -> str:
    """The rows as Markdown, CSV or LaTeX, every record string escaped for its format."""
    if fmt not in SHARE_FORMATS:
        raise VLBenchError(f"--format {fmt!r}: use one of {', '.join(SHARE_FORMATS)}.")
    return {"md": _markdown, "csv": _csv, "latex": _latex}[fmt](rows)
