"""A static, self-contained leaderboard page (inline CSS, JS and SVG; no server, no network).

One section per (task, dataset): the sortable comparison table (with the paired test against the
text-only/blind reference and trainable parameters), then three plots drawn as inline SVG here in
Python: the tested metric as bars with ±std error bars, score against trainable parameters (the PEFT
trade-off), and validation curves per epoch (mean over seeds). Every string from a record is
HTML-escaped; the page runs only its own sorting script.

Tables wider than the window scroll sideways inside their own box, with the baseline column held in
place, and put the comparison (tested metric, interval, Δ, p, image reliance) before the costs and the
other metrics, so that a 1280-pixel window shows it without scrolling. Plots name their points in a
legend, never beside the points, where close points would print one name over another.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Optional, Sequence

from vlbench.results.aggregate import Table, aggregate
from vlbench.results.escape import html_text, one_line
from vlbench.results.flips import examples_html
from vlbench.results.robustness import severity_curves
from vlbench.results.sections import TEXT_COLUMNS, legend, wide_sections

__all__ = ["build_page", "html_tables", "bar_chart", "scatter_chart", "curve_chart"]

# Tableau 20: twenty colours before one repeats (the embedded VQA section has twelve baselines)
_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
            "#bab0ac", "#a0cbe8", "#ffbe7d", "#8cd17d", "#b6992d", "#499894", "#86bcb6", "#f1ce63", "#d37295",
            "#fabfd2", "#79706e"]

_PLOT_WIDTH = 400  # px: three plots and their gaps fit a 1280-pixel window side by side
_LEGEND_ROW = 16  # px per legend entry (11 px text)
_TICK_SPACING = 28  # px at least between the centres of two axis labels
_TICK_DROP = 20  # px from the x axis down to its labels' baseline: clear of the lowest y label beside the corner

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.3rem .55rem;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
th{background:#f6f6f6;cursor:pointer;user-select:none;white-space:normal;max-width:8.5rem;vertical-align:bottom}
.wrap{overflow-x:auto;max-width:100%}
th:first-child,td:first-child,td.cfg{text-align:left}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;background:#fff;box-shadow:inset -1px 0 0 #ccc}
th:first-child{background:#f6f6f6}tr.few td:first-child{background:#fffbea}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.failed td{color:#b00020}tr.few td{background:#fffbea}
.legend{font-size:.8rem;color:#555;margin:.2rem 0 1rem 0}.legend li{margin:.1rem 0}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
figcaption{font-size:.8rem;color:#555;text-align:center}
table.flips img{max-width:96px;max-height:96px;image-rendering:pixelated}details{margin:.3rem 0}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row){
        var cell = row.cells[col]; var v = cell.getAttribute('data-v');
        var num = parseFloat(v);
        return isNaN(num) ? {t: 1, s: cell.textContent} : {t: 0, n: num};
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x.t !== y.t) return x.t - y.t;
        var c = x.t === 0 ? x.n - y.n : x.s.localeCompare(y.s);
        return asc ? c : -c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _sort_value(header: str, cell: str, row: dict[str, Any]) -> str:
    if header.startswith("params"):
        return str(row.get("trainable_params") if row.get("trainable_params") is not None else "")
    if header.startswith("p (") and cell.startswith("<"):
        return "0"
    match = _NUMBER.search(cell) if header not in TEXT_COLUMNS else None
    return match.group(0) if match and not cell.startswith("failed") else ""


def _page_order(section: dict[str, Any]) -> list[int]:
    """Column positions on the page: who, then the tested metric and its comparison, then everything else."""
    header, tested = section["header"], section["tested"]

    def rank(h: str) -> int:
        if h in ("baseline", "config", "family", "init", "n seeds"):
            return 0
        if h in (tested, f"{tested} 95% CI"):
            return 1
        if h.startswith(("Δ ", "p (")):
            return 2
        robust = ("clean (", "corrupted", "corruption drop", "typos", "word dropout", "PGD")
        return 3 if h.startswith(("image reliance", "flips", "EMAP (", *robust)) else 4

    return sorted(range(len(header)), key=lambda i: (rank(header[i]), i))


def _table_html(section: dict[str, Any]) -> str:
    order = _page_order(section)
    header = [section["header"][i] for i in order]
    head = "".join(f"<th>{html_text(h)}</th>" for h in header)
    rows = []
    for b in section["body"]:
        row = b["row"]
        cls = "failed" if row["status"] == "failed" else "few" if row["n"] < 3 else ""
        cells = []
        for h, c in zip(header, [b["cells"][i] for i in order]):
            klass = ' class="cfg"' if h == "config" else ""
            cells.append(f'<td{klass} data-v="{html_text(_sort_value(h, c, row))}">{html_text(one_line(c))}</td>')
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return (f'<div class="wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _legend_html(lines: list[str]) -> str:
    return '<ul class="legend">' + "".join(f"<li>{html_text(one_line(x))}</li>" for x in lines) + "</ul>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
            f'script-src \'unsafe-inline\'; img-src data: \'self\'">'
            f"<title>{html_text(title)}</title><style>{_CSS}</style></head><body>{body}"
            f"<script>{_JS}</script></body></html>\n")


def html_tables(table: Table) -> str:
    """A standalone HTML page with the comparison tables (sortable) and the legend; no plots."""
    parts = ["<h1>vlbench results</h1>"]
    for s in wide_sections(table):
        parts.append(f"<h2>{html_text(s['task'])} on {html_text(s['dataset'])}</h2>{_table_html(s)}")
    parts.append(_legend_html(legend(table)))
    return _page("vlbench results", "".join(parts))


# --- plots ------------------------------------------------------------------------------------------
def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def _svg(width: int, height: int, inner: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>{html_text(title)}</title>{inner}</svg>')


def _color(name: str, i: int, colors: Optional[dict[str, str]]) -> str:
    return (colors or {}).get(name) or _PALETTE[i % len(_PALETTE)]


def bar_chart(items: list[tuple[str, float, Optional[float]]], label: str, width: int = _PLOT_WIDTH,
              colors: Optional[dict[str, str]] = None) -> str:
    """Horizontal bars of (name, mean, std) with ±std error bars, as an inline SVG string."""
    if not items:
        return ""
    left, right, bar, gap, top = 180, 20, 16, 6, 10
    height = top + len(items) * (bar + gap) + 34
    lo = min(0.0, *(m - (s or 0) for _, m, s in items))
    hi = max(*(m + (s or 0) for _, m, s in items), lo + 1e-9)
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    span = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * span

    out = []
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - 24}" stroke="#eee"/>'
                   f'<text x="{x(t):.1f}" y="{height - 10}" text-anchor="middle">{t:g}</text>')
    for i, (name, mean, std) in enumerate(items):
        y = top + i * (bar + gap)
        x0, x1 = x(min(0.0, mean)), x(max(0.0, mean))
        out.append(f'<text x="{left - 6}" y="{y + bar - 4}" text-anchor="end">{html_text(_short(name, 26))}</text>'
                   f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.5):.1f}" height="{bar}" '
                   f'fill="{_color(name, i, colors)}"><title>{html_text(one_line(name))}: {mean:.2f}'
                   f'{f" ± {std:.2f}" if std is not None else ""}</title></rect>')
        if std is not None:
            cy = y + bar / 2
            out.append(f'<path d="M{x(mean - std):.1f},{cy} H{x(mean + std):.1f} M{x(mean - std):.1f},{cy - 4} '
                       f'V{cy + 4} M{x(mean + std):.1f},{cy - 4} V{cy + 4}" stroke="#222" fill="none"/>')
    return _svg(width, height, "".join(out), label)


def scatter_chart(points: list[tuple[str, float, float]], label: str, width: int = _PLOT_WIDTH, height: int = 300,
                  colors: Optional[dict[str, str]] = None) -> str:
    """Score (y) against trainable parameters (x, log scale) for (name, params, score) points, as SVG."""
    points = [(n, p, s) for n, p, s in points if s is not None]
    if not points:
        return ""
    left, right, top, bottom = 50, 150, 12, 42
    height = max(height, top + len(points) * _LEGEND_ROW + bottom)
    xs = [math.log10(max(p, 1.0)) for _, p, _ in points]
    ys = [s for _, _, s in points]
    xlo, xhi = math.floor(min(xs)), max(math.ceil(max(xs)), math.floor(min(xs)) + 1)
    yt = _ticks(min(ys), max(ys))
    ylo, yhi = yt[0], yt[-1]

    def px(v: float) -> float:
        return left + (v - xlo) / (xhi - xlo) * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - ylo) / ((yhi - ylo) or 1) * (height - top - bottom)

    out = []
    for e in range(int(xlo), int(xhi) + 1):
        out.append(f'<line x1="{px(e):.1f}" x2="{px(e):.1f}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>'
                   f'<text x="{px(e):.1f}" y="{height - bottom + _TICK_DROP}" text-anchor="middle">1e{e}</text>')
    for t in yt:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">trainable parameters '
               f'(log; 0 plotted at 1)</text>')
    for i, ((name, params, score), xv) in enumerate(zip(points, xs)):
        color = _color(name, i, colors)
        out.append(f'<circle cx="{px(xv):.1f}" cy="{py(score):.1f}" r="5" fill="{color}">'
                   f'<title>{html_text(one_line(name))}: {score:.2f} with {int(params)} trainable</title></circle>')
        out.append(_legend_entry(width - right + 8, top + i * _LEGEND_ROW, color, name, "circle"))
    return _svg(width, height, "".join(out), label)


def curve_chart(curves: list[tuple[str, list[tuple[int, float]]]], label: str, width: int = _PLOT_WIDTH,
                height: int = 300, colors: Optional[dict[str, str]] = None, x_label: str = "epoch") -> str:
    """A score per step of ``x_label`` (epoch, severity), one line per (name, [(x, value)]), as SVG."""
    curves = [(n, pts) for n, pts in curves if pts]
    if not curves:
        return ""
    left, right, top, bottom = 50, 150, 12, 42
    height = max(height, top + len(curves) * _LEGEND_ROW + bottom)
    epochs = [e for _, pts in curves for e, _ in pts]
    values = [v for _, pts in curves for _, v in pts]
    elo, ehi = min(epochs), max(max(epochs), min(epochs) + 1)
    yt = _ticks(min(values), max(values))

    def px(e: float) -> float:
        return left + (e - elo) / (ehi - elo) * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - yt[0]) / ((yt[-1] - yt[0]) or 1) * (height - top - bottom)

    out = []
    for t in yt:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    labelled = sorted(set(epochs))
    stride = math.ceil(len(labelled) * _TICK_SPACING / (width - left - right))  # tick labels at least that far apart
    for e in labelled[::max(stride, 1)]:
        out.append(f'<text x="{px(e):.1f}" y="{height - bottom + _TICK_DROP}" text-anchor="middle">{e}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">{html_text(x_label)}</text>')
    for i, (name, pts) in enumerate(curves):
        color = _color(name, i, colors)
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(e):.1f},{py(v):.1f}" for j, (e, v) in enumerate(pts))
        out.append(f'<path d="{path}" stroke="{color}" stroke-width="2" fill="none"><title>'
                   f'{html_text(one_line(name))}</title></path>')
        out += [f'<circle cx="{px(e):.1f}" cy="{py(v):.1f}" r="2.5" fill="{color}"/>' for e, v in pts]
        out.append(_legend_entry(width - right + 8, top + i * _LEGEND_ROW, color, name, "rect"))
    return _svg(width, height, "".join(out), label)


def _legend_entry(x: float, y: float, color: str, name: str, mark: str) -> str:
    """One legend row: a colour mark and the (shortened) name, the full name as its tooltip."""
    shape = (f'<circle cx="{x + 5}" cy="{y + 5}" r="5" fill="{color}"/>' if mark == "circle"
             else f'<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>')
    return (f'<g>{shape}<text x="{x + 14}" y="{y + 9}">{html_text(_short(name, 20))}'
            f'<title>{html_text(one_line(name))}</title></text></g>')


def _curve(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Mean validation score per epoch over seeds (epochs every seed reached)."""
    by_epoch: dict[int, list[float]] = {}
    for r in records:
        for entry in (r.get("training") or {}).get("history") or []:
            value = entry.get("validation")
            if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(entry.get("epoch"), int):
                by_epoch.setdefault(entry["epoch"], []).append(float(value))
    return [(e, sum(v) / len(v)) for e, v in sorted(by_epoch.items()) if len(v) == len(records)]


def _short(name: str, size: int) -> str:
    name = one_line(name)
    return name if len(name) <= size else name[: size - 1] + "…"


def _label(row: dict[str, Any]) -> str:
    return row["baseline"] + (f" [{row['config']}]" if row["config"] else "")


def build_page(records: Iterable[dict[str, Any]], notes: Optional[list[str]] = None, *, rounds: int = 10000,
               thumbnail: Optional[Callable[[dict[str, Any], int], Optional[str]]] = None,
               sections: Sequence[str] = ()) -> str:
    """The whole leaderboard page for a set of records (a pure function of them, but for ``thumbnail``).

    ``thumbnail(record, image_id)`` writes a flip example's image beside the page and returns its file name;
    ``sections`` are finished, escaped HTML sections put after the tasks' (the claims section).
    """
    records = list(records)
    table = aggregate(records, rounds=rounds)
    table.notes.extend(notes or [])
    parts = ["<h1>vlbench leaderboard</h1>",
             f"<p>{len(records)} run records; generated from run records by <code>vlbench leaderboard</code>. "
             "Click a column header to sort; a table wider than the window scrolls sideways, its baseline column "
             "held in place.</p>"]
    for s in wide_sections(table):
        tested = s["tested"]
        parts.append(f"<section><h2>{html_text(s['task'])} on {html_text(s['dataset'])}</h2>{_table_html(s)}")
        ok = [b for b in s["body"] if b["tested"] is not None and b["tested"]["mean"] is not None]
        colors = {_label(b["row"]): _PALETTE[i % len(_PALETTE)] for i, b in enumerate(ok)}
        ranked = sorted(ok, key=lambda b: -b["tested"]["mean"])
        bars = bar_chart([(_label(b["row"]), b["tested"]["mean"], b["tested"]["std"]) for b in ranked],
                         f"{tested}: mean ± std over seeds", colors=colors)
        scatter = scatter_chart([(_label(b["row"]), float(b["row"]["trainable_params"] or 0), b["tested"]["mean"])
                                 for b in ok if b["row"]["trainable_params"] is not None],
                                f"{tested} against trainable parameters", colors=colors)
        curves = []
        for b in ok:
            group = [r for r in records if r.get("status", "ok") == "ok" and r["task"] == s["task"]
                     and r["dataset"] == s["dataset"] and r["config_hash"] == b["row"]["config_hash"]
                     and r["baseline"] == b["row"]["baseline"]]
            curves.append((_label(b["row"]), _curve(group)))
        curve = curve_chart(curves, "validation score per epoch (mean over seeds)", colors=colors)
        severity = curve_chart(severity_curves([b["tested"] for b in ok], tested, _label),
                               f"{tested} against corruption severity", colors=colors,
                               x_label="corruption severity (0: clean)")
        figures = [(bars, f"{tested} (mean ± std over seeds)"), (scatter, f"{tested} vs trainable parameters"),
                   (curve, "validation (primary metric) per epoch, mean over seeds"),
                   (severity, f"{tested} vs corruption severity: mean over the 5 corruptions and seeds (0: clean)")]
        parts.append('<div class="plots">' + "".join(
            f"<figure>{svg}<figcaption>{html_text(caption)}</figcaption></figure>" for svg, caption in figures if svg
        ) + "</div>")
        section_records = [r for r in records if r.get("status", "ok") == "ok" and r["task"] == s["task"]
                           and r["dataset"] == s["dataset"]]
        parts.append(examples_html(section_records, thumbnail) + "</section>")
    parts.extend(sections)
    parts.append("<h2>Notes</h2>" + _legend_html(legend(table)))
    return _page("vlbench leaderboard", "".join(parts))
