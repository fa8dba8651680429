"""Data efficiency: the same runs on nested fractions of the training images, and the curves they draw.

``vlbench run --train-fraction 0.01,0.1,1`` runs every (baseline, seed) once per fraction, each with
``task.train_subset: {fraction: f}`` in its resolved config (so in its hash and record), each fraction's
records under ``DIR/fraction-F/``. ``vlbench efficiency DIR --task T`` turns those records into a table and
a plot of the test metric against the number of labelled training examples, with mean ± std over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from vlbench.errors import VLBenchError

__all__ = ["print_efficiency", "parse_fractions", "parse_shots", "fraction_dir", "run_fractions", "CurvePoint", "Curve", "curves_from_records",
           "matching_fraction", "render_efficiency", "plot_curves"]


def parse_fractions(text: str) -> list[float]:
    """``"0.01,0.1,1"`` -> sorted distinct fractions in (0, 1]; anything else is one clear error."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VLBenchError(f"--train-fraction {text!r}: expected numbers in (0, 1] like 0.01,0.1,1.") from None
    if not values or any(not 0 < v <= 1 for v in values) or len(set(values)) != len(values):
        raise VLBenchError(f"--train-fraction {text!r}: give distinct fractions in (0, 1], e.g. 0.01,0.1,1.")
    return sorted(values)


def parse_shots(text: str) -> list[int]:
    """``"1,4,8"`` -> sorted distinct positive ints; anything else is one clear error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VLBenchError(f"--k-shot {text!r}: expected positive integers like 1,4,8.") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise VLBenchError(f"--k-shot {text!r}: give distinct positive integers, e.g. 1,4,8.")
    return sorted(values)


def fraction_dir(results_dir: Path, fraction: float, rule: str = "fraction") -> Path:
    """Where one fraction's (or k-shot's) records go: records of different sizes never share a path."""
    short = f"{fraction:g}"  # 0.1 -> 0.1, 1.0 -> 1; a value :g would round (0.1000001) keeps all its digits
    name = f"fraction-{short if float(short) == fraction else repr(fraction)}" if rule == "fraction" else f"k-shot-{int(fraction)}"
    return Path(results_dir) / name


def run_fractions(request: Any, fractions: list[float], run: Callable[[Any], Any], rule: str = "fraction") -> Any:
    """Run ``request`` once per fraction or k (``rule``: fraction or k_shot), smallest first; merge the outcomes."""
    from vlbench.plan import merge_outcomes

    outcomes = []
    for fraction in fractions:
        part = replace(request, results_dir=fraction_dir(request.results_dir, fraction, rule),
                       overrides=[*request.overrides, f"task.train_subset={{{rule}: {fraction!r}}}"])
        outcomes.append(run(part))
    return merge_outcomes(outcomes)


@dataclass
class CurvePoint:
    """One baseline at one fraction: labelled examples used and the metric over seeds."""

    fraction: float
    examples: float
    images: float
    mean: float
    std: Optional[float]
    n: int
    seeds: list[int]


@dataclass
class Curve:
    """One baseline's points, by growing fraction."""

    baseline: str
    family: str
    points: list[CurvePoint] = field(default_factory=list)
    regime: str = "fine-tuned"  # or "prompted": k examples in each query's prompt, no parameter update

    def at(self, fraction: float) -> Optional[CurvePoint]:
        """The point at ``fraction``, if measured."""
        return next((p for p in self.points if math.isclose(p.fraction, fraction)), None)


def _draw(record: dict[str, Any]) -> dict[str, Any]:
    draws = (record.get("data", {}).get("info") or {}).get("train_subset") or {}
    if len(draws) != 1:
        raise VLBenchError(f"{record.get('_path', 'a record')}: expected one train_subset draw in data.info, found {len(draws)}.")
    return next(iter(draws.values()))


def _shots(record: dict[str, Any]) -> Optional[int]:
    """In-context examples per query of a prompted baseline's record (None: not a prompted baseline)."""
    baseline = record["config"]["baseline"]
    if baseline.get("model") != "prompted":
        return None
    return int((baseline.get("config") or {}).get("shots", 0))


def curves_from_records(records: list[dict[str, Any]], task: str, metric: Optional[str] = None,
                        rule: str = "fraction") -> tuple[list[Curve], str]:
    """Curves of ``metric`` (default: the primary metric) per baseline over the ``rule`` (fraction or k_shot) records."""
    current = [r for r in records if r.get("task") == task and r.get("status", "ok") == "ok"
               and ".cfg-" not in Path(r.get("_path", "")).name]  # records of earlier configs, kept aside by reruns
    chosen = [r for r in current if (r["config"]["task"].get("train_subset") or {}).get(rule) is not None]
    # k-shot tables also show prompted baselines at k in-context examples: prompting against tuning at each k
    prompted = [r for r in current if rule == "k_shot" and _shots(r) is not None
                and not (r["config"]["task"].get("train_subset") or {})]
    if not chosen and not prompted:
        flag = "--train-fraction 0.1,1" if rule == "fraction" else "--k-shot 1,4,8"
        raise VLBenchError(f"no records of task {task!r} with a train_subset {rule}; run `vlbench run --task {task} "
                           f"{flag} ...` first.")
    metric = metric or (chosen or prompted)[0]["primary_metric"]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in chosen:
        groups[(r["baseline"], float(r["config"]["task"]["train_subset"][rule]))].append(r)
    for r in prompted:
        groups[(r["baseline"], float(_shots(r)))].append(r)
    curves: dict[str, Curve] = {}
    for (baseline, fraction), recs in sorted(groups.items()):
        hashes = {r["config_hash"] for r in recs}
        if len(hashes) > 1:
            raise VLBenchError(f"baseline {baseline!r} at {rule} {fraction:g} has records of {len(hashes)} different "
                               f"configs; keep each configuration in its own results folder.")
        missing = [r["_path"] for r in recs if metric not in r["test"]["metrics"]]
        if missing:
            raise VLBenchError(f"{missing[0]}: no test metric {metric!r}.")
        values = [float(r["test"]["metrics"][metric]) for r in recs]
        in_prompt = _shots(recs[0]) is not None and not (recs[0]["config"]["task"].get("train_subset") or {})
        # a prompted model's labelled examples are the k shown with each query
        draws = [{"examples": fraction, "images": fraction} for _ in recs] if in_prompt else [_draw(r) for r in recs]
        curve = curves.setdefault(baseline, Curve(baseline, recs[0]["config"]["baseline"].get("family", ""),
                                                  regime="prompted" if in_prompt else "fine-tuned"))
        curve.points.append(CurvePoint(
            fraction=fraction,
            examples=statistics.fmean(d["examples"] for d in draws),
            images=statistics.fmean(d["images"] for d in draws),
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            n=len(values),
            seeds=sorted(r["seed"] for r in recs),
        ))
    return list(curves.values()), metric


def matching_fraction(curve: Curve, target: float) -> Optional[CurvePoint]:
    """The smallest measured fraction at which ``curve``'s mean reaches ``target`` (None: never)."""
    return next((p for p in sorted(curve.points, key=lambda p: p.fraction) if p.mean >= target), None)


def flat_reference(curve: Curve, alpha: float = 0.05) -> Optional[str]:
    """Why reaching ``curve``'s full-data score says little, or None: it gains nothing detectable from more labels.

    Its smallest fraction against fraction 1, Welch's t-test over seeds (one-sided: more data scores higher).
    """
    from scipy import stats

    full = curve.at(1.0)
    low = min((p for p in curve.points if p.fraction < 1.0), key=lambda p: p.fraction, default=None)
    if full is None or low is None:
        return None
    if full.mean > low.mean:
        if full.std is None or low.std is None or full.n < 2 or low.n < 2 or (full.std == 0 and low.std == 0):
            return None  # no spread to test against: leave the reader the numbers
        p = float(stats.ttest_ind_from_stats(full.mean, full.std, full.n, low.mean, low.std, low.n,
                                             equal_var=False, alternative="greater").pvalue)
        if p < alpha:
            return None
        how = f"Welch's t-test over seeds, one-sided p = {p:.2f}"
    else:
        how = "no higher with all of them"
    return (f"{curve.baseline} gains nothing detectable from more labels here ({low.mean:.2f} at fraction "
            f"{low.fraction:g}, {full.mean:.2f} at 1; {how}): reaching its full-data score says little about "
            f"sample efficiency.")


def render_efficiency(curves: list[Curve], metric: str, reference: Optional[str],
                      rule: str = "fraction") -> tuple[str, list[str]]:
    """A Markdown table (one row per baseline and fraction or k) and the sample-efficiency lines."""
    notes: list[str] = []
    if rule != "fraction":
        lines = [f"| baseline | regime | k | images | labelled examples | {metric} (mean ± std) | seeds |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for curve in curves:
            regime = "k per answer, fine-tuned" if curve.regime == "fine-tuned" else "k in the prompt, no training"
            for p in curve.points:
                spread = f" ± {p.std:.2f}" if p.std is not None else ""
                lines.append(f"| {curve.baseline} | {regime} | {p.fraction:g} | {p.images:,.0f} | {p.examples:,.0f} | "
                             f"{p.mean:.2f}{spread} | {p.n} |")
        if any(c.regime == "prompted" for c in curves):
            notes.append("prompted rows: k solved examples shown with every query (drawn per query by the seed); "
                         "fine-tuned rows: k labelled examples per answer, trained on.")
        return "\n".join(lines), notes
    lines = [f"| baseline | fraction | images | labelled examples | {metric} (mean ± std) | seeds |",
             "|---|---:|---:|---:|---:|---:|"]
    for curve in curves:
        for p in curve.points:
            spread = f" ± {p.std:.2f}" if p.std is not None else ""
            lines.append(f"| {curve.baseline} | {p.fraction:g} | {p.images:,.0f} | {p.examples:,.0f} | "
                         f"{p.mean:.2f}{spread} | {p.n} |")
    ref = next((c for c in curves if c.baseline == reference), None)
    full = ref.at(1.0) if ref is not None else None
    if full is None:
        notes.append(f"sample-efficiency gain: needs the reference {reference!r} at fraction 1 in these records.")
        return "\n".join(lines), notes
    flat = flat_reference(ref)
    if flat:
        notes.append(flat)
    for curve in curves:
        if curve.baseline == reference:
            continue
        hit = matching_fraction(curve, full.mean)
        if hit is None:
            notes.append(f"{curve.baseline}: never reaches {reference}'s full-data {metric} {full.mean:.2f} "
                         f"at the measured fractions.")
        else:
            notes.append(f"{curve.baseline}: matches {reference}'s full-data {metric} ({full.mean:.2f}) from fraction "
                         f"{hit.fraction:g} ({hit.examples:,.0f} labelled examples, {1 / hit.fraction:.3g}x fewer labels).")
    return "\n".join(lines), notes


def plot_curves(curves: list[Curve], metric: str, reference: Optional[str], path: Path, title: str,
                by_k: bool = False) -> Path:
    """A PNG of metric against labelled examples (log x), mean line and ± std band per baseline.

    ``by_k``: against k instead (linear x), prompted baselines dashed, so prompting and tuning meet at each k.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vlbench.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for curve in curves:
        xs = [p.fraction if by_k else p.examples for p in curve.points]
        ys = [p.mean for p in curve.points]
        prompted = curve.regime == "prompted"
        line, = ax.plot(xs, ys, marker="s" if prompted else "o", linestyle="--" if prompted else "-",
                        label=f"{curve.baseline} (k in prompt)" if prompted else curve.baseline)
        lo = [p.mean - (p.std or 0.0) for p in curve.points]
        hi = [p.mean + (p.std or 0.0) for p in curve.points]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ref = next((c for c in curves if c.baseline == reference), None)
    if ref is not None and ref.at(1.0) is not None:
        ax.axhline(ref.at(1.0).mean, color="grey", linestyle="--", linewidth=1, label=f"{reference}, all data")
    if by_k:
        ax.set_xlabel("k: labelled examples per answer (fine-tuned) or in the prompt (prompted)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def print_efficiency(results_dir: Path, task: str, metric: Optional[str], reference: Optional[str],
                     plot: Optional[Path], console: Any, rule: str = "fraction") -> None:
    """Print the data-efficiency (or k-shot) table and gains for a results folder and write its plot."""
    from vlbench.results.records import load_records

    curves, metric = curves_from_records(load_records(results_dir), task, metric, rule)
    table, notes = render_efficiency(curves, metric, reference, rule)
    console.print(table, markup=False)
    for line in notes:
        console.print(line, markup=False, soft_wrap=True)  # one note, one line, whatever the console's width
    plot = plot or Path(results_dir) / f"{'efficiency' if rule == 'fraction' else 'k-shot'}-{task}.png"
    if rule == "fraction":
        plot_curves(curves, metric, reference, plot, f"{task}: {metric} against labelled examples")
    else:
        plot_curves(curves, metric, None, plot, f"{task}: {metric} at k examples", by_k=True)
    console.print(f"plot -> {plot}", markup=False)
