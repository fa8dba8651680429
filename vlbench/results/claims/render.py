"""The claims page as Markdown (``results/claims.md``) and as a section of the leaderboard page (HTML).

Both are pure functions of a :class:`~vlbench.results.claims.ClaimsPage`: no date, no path of the machine
beyond the folders given, every row in the order the builders fix, so the same records give the same
bytes. Every string from a record is escaped for its format; commands sit in fenced blocks whose fence
is longer than any backtick run inside them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

from vlbench.results.claims.model import Claim, Row
from vlbench.results.escape import html_text, markdown_cell, one_line
from vlbench.results.sections import number_text, p_text

if TYPE_CHECKING:
    from vlbench.results.claims import ClaimsPage

__all__ = ["markdown_page", "html_section", "rules"]



def _num(value: Optional[float], percent: bool, sign: bool = True) -> str:
    if value is None:
        return "—"
    return number_text(100 * value, 1) + "%" if percent else number_text(value, signed=sign)


def _effect(row: Row) -> str:
    return "—" if row.effect is None else f"{_num(row.effect, row.percent)}" + ("" if row.percent else f" {row.unit}")


def _interval(row: Row) -> str:
    if row.ci is None:
        return "—"
    low, high = row.ci
    left = _num(low, row.percent) if low is not None else "below −100%"
    right = _num(high, row.percent) if high is not None else "above 200%"
    return f"[{left}, {right}]"


def _why(row: Row) -> str:
    return row.blocker or row.why_untested or ""


def rules(page: "ClaimsPage") -> list[str]:
    """How a verdict is decided, one sentence per line."""
    o = page.options
    return [
        "Each claim rests on rows: comparisons between systems (a baseline's records of one config, its seeds) "
        "scored on the same test items. Every row's two-sided p-value is from the project's seed-and-item test "
        "(between-seed and paired item variance, Satterthwaite df; docs/results.md, \"Statistics\") unless the row "
        "names another.",
        f"All rows with a p-value form one family, Holm-corrected (Holm 1979): p (Holm) < {o.alpha:g} bounds the "
        f"chance of any false \"supported\" on this page at {o.alpha:g}.",
        f"supported: the effect is in the claimed direction and p (Holm) < {o.alpha:g}; for a claim of no effect, "
        f"two one-sided tests (TOST) reject a difference beyond ±{o.margin:g} points (p (Holm) < {o.alpha:g}).",
        "not supported: the records exist and the test does not reach that: the effect points the other way, or no "
        "difference is detected (which is not evidence of no difference), or a stated condition fails.",
        "not tested here: the records a comparison needs are missing; the page names them and a command that "
        "would make them.",
        "A claim holds when at least one of its tested rows is supported (\"any\") or every one is (\"every\"), as "
        "each claim says. Intervals are 95% intervals of the effect.",
    ]


def _fence(lines: list[str]) -> str:
    longest = max([len(m) for line in lines for m in re.findall(r"`+", line)] + [2])
    fence = "`" * (longest + 1)
    return "\n".join([fence + "sh", *(one_line(line) for line in lines), fence])


def _commands(claim: Claim) -> list[str]:
    return sorted({c for row in claim.rows for c in row.commands})


def _claim_md(claim: Claim) -> list[str]:
    out = [f"## {claim.number}. {markdown_cell(claim.title)}", "",
           f"- **Claim:** {markdown_cell(claim.statement)}", f"- **Papers:** {markdown_cell(claim.sources)}",
           f"- **Counts as support:** {markdown_cell(claim.definition)}",
           f"- **Verdict: {claim.verdict}.** {markdown_cell(claim.summary)}", ""]
    if claim.rows:
        out += ["| comparison | effect | 95% CI | p | p (Holm) | verdict | why |", "|---|---:|---:|---:|---:|---|---|"]
        out += [f"| {markdown_cell(r.comparison)} | {markdown_cell(_effect(r))} | {markdown_cell(_interval(r))} | "
                f"{markdown_cell(p_text(r.p_value))} | {markdown_cell(p_text(r.p_holm))} | {r.verdict} | "
                f"{markdown_cell(_why(r))} |" for r in claim.rows]
        out.append("")
        for r in claim.rows:
            out.append(f"- {markdown_cell(r.comparison)}:")
            out += [f"  - test: {markdown_cell(r.test)}"] if r.test else []
            out += [f"  - {markdown_cell(note)}" for note in r.notes]
            out += [f"  - rests on {markdown_cell(cite)}" for cite in r.rests_on]
        out.append("")
    if _commands(claim):
        out += ["Commands that made these records (rebuilt from the records' configs):", "", _fence(_commands(claim)), ""]
    if claim.to_make:
        out += ["Records that would test it:", "", _fence(claim.to_make), ""]
    return out


def markdown_page(page: "ClaimsPage") -> str:
    """The whole ``results/claims.md``."""
    out = ["# Claims of the literature, tested on vlbench's records", "",
           f"Generated from records by `{one_line(page.command).replace('`', '')}`; never edited by hand "
           "(results/make.sh and results/protocols.sh regenerate it). docs/results.md (\"Claims\") explains it.", "",
           "| # | claim | verdict | in short |", "|---|---|---|---|"]
    out += [f"| {c.number} | {markdown_cell(c.title)} | **{c.verdict}** | {markdown_cell(c.summary)} |"
            for c in page.claims]
    out += ["", "## How a verdict is decided", ""] + [f"- {markdown_cell(line)}" for line in rules(page)]
    out += ["", "## Record sets", "", "| folder | run records | continual summaries | record schema | git commits |",
            "|---|---:|---:|---|---|"]
    out += [f"| {markdown_cell(s.folder)} | {s.records} | {s.summaries} | "
            f"{markdown_cell(', '.join(f'v{k} ({v})' for k, v in s.schemas.items()) or '—')} | "
            f"{markdown_cell(', '.join(f'{k} ({v})' for k, v in s.commits.items()) or '—')} |" for s in page.sets]
    out.append("")
    for claim in page.claims:
        out += _claim_md(claim)
    return "\n".join(out).rstrip("\n") + "\n"


_WRAP = 'style="white-space:normal;text-align:left;min-width:16rem"'  # the page's cells do not wrap; prose must
_PRE = 'style="white-space:pre-wrap;overflow-wrap:anywhere"'  # long commands wrap inside the window


def _rows_html(claim: Claim) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("comparison", "effect", "95% CI", "p", "p (Holm)", "verdict", "why"))
    body = "".join(
        f"<tr><td>{html_text(r.comparison)}</td><td>{html_text(_effect(r))}</td><td>{html_text(_interval(r))}</td>"
        f"<td>{html_text(p_text(r.p_value))}</td><td>{html_text(p_text(r.p_holm))}</td><td>{html_text(r.verdict)}</td>"
        f"<td {_WRAP}>{html_text(_why(r))}</td></tr>" for r in claim.rows)
    details = "".join(
        f"<li>{html_text(r.comparison)}<ul>" + "".join(
            f"<li>{html_text(line)}</li>"
            for line in ([f"test: {r.test}"] if r.test else []) + r.notes + [f"rests on {c}" for c in r.rests_on])
        + "</ul></li>" for r in claim.rows)
    return (f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            f'<details><summary>tests, records</summary><ul class="legend">{details}</ul></details>')


def html_section(page: "ClaimsPage") -> str:
    """The leaderboard's claims section: the verdict table, then each claim's rows, records and commands."""
    parts = ['<section id="claims"><h2>Claims of the literature</h2>',
             f"<p>Generated from records by <code>{html_text(page.command)}</code>.</p>",
             '<div class="wrap"><table><thead><tr><th>#</th><th>claim</th><th>verdict</th><th>in short</th></tr>'
             "</thead><tbody>"]
    parts += [f"<tr><td>{html_text(c.number)}</td><td {_WRAP}>{html_text(c.title)}</td><td><b>{html_text(c.verdict)}</b>"
              f"</td><td {_WRAP}>{html_text(c.summary)}</td></tr>" for c in page.claims]
    parts.append("</tbody></table></div>" + '<ul class="legend">' + "".join(f"<li>{html_text(line)}</li>" for line in rules(page))
                 + "</ul>")
    for claim in page.claims:
        parts.append(f"<h3>{html_text(claim.number)}. {html_text(claim.title)}</h3><p>{html_text(claim.statement)} "
                     f"<i>{html_text(claim.sources)}</i></p><p>Counts as support: {html_text(claim.definition)}</p>"
                     f"<p><b>Verdict: {html_text(claim.verdict)}.</b> {html_text(claim.summary)}</p>")
        if claim.rows:
            parts.append(_rows_html(claim))
        for title, lines in (("Commands that made these records", _commands(claim)),
                             ("Records that would test it", claim.to_make)):
            if lines:
                parts.append(f"<p>{title}:</p><pre {_PRE}><code>{html_text(chr(10).join(lines))}</code></pre>")
    return "".join(parts) + "</section>"
