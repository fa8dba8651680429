"""Every output format against hostile names: no markup, formula, row or column comes from a record string."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from html.parser import HTMLParser

import pytest

from tests.results_fixtures import make_record
from vlbench.results.aggregate import aggregate
from vlbench.results.escape import csv_cell, latex_text, markdown_cell
from vlbench.results.table import FORMATS, render

HOSTILE = ["<script>alert(1)</script>|x", "two\nlines", '=HYPERLINK("http://evil","x")', "[/x]",
           "\\textbf{x}_&%$#", "@SUM(1)", "-2+3"]


@pytest.fixture(scope="module")
def table():
    items = {str(i): float(i % 3 == 0) for i in range(30)}
    records = [make_record("text-bert", s, items, config_hash="0" * 16) for s in (0, 1)]
    for i, name in enumerate(HOSTILE):
        for seed in (0, 1):
            records.append(make_record(name, seed, items, config_hash=f"{i + 1:016x}", ablation=(10.0, 20.0)))
    records.append(make_record("[bold]failed[/bold]", 0, status="failed", config_hash="f" * 16))
    return aggregate(records, rounds=200)


def test_markdown_rows_and_columns_stay_put(table):
    md = render(table, "md")
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header_cells = len(re.split(r"(?<!\\)\|", lines[0])) - 2
    assert len(lines) == 2 + 1 + len(HOSTILE) + 1  # header, rule, reference, hostile rows, the failed row
    for line in lines:
        assert len(re.split(r"(?<!\\)\|", line)) - 2 == header_cells, line
    assert "<script" not in md and "&lt;script&gt;" in md


def test_csv_has_no_live_formula_and_one_row_per_metric(table):
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert len(rows) == len(table.rows)
    for row in rows:
        for key in ("task", "dataset", "baseline", "config", "failure"):
            assert not row[key].startswith(("=", "+", "-", "@", "\t", "\r")), row[key]
    names = {row["baseline"] for row in rows}
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in names and "two\nlines" in names  # quoted, not split


def test_json_is_strict_and_round_trips_names(table):
    table.rows[0]["std"] = math.nan  # even a non-finite number becomes null, never bare NaN
    table.rows[0]["delta_ci_high"] = math.inf
    text = render(table, "json")

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    rows = json.loads(text, parse_constant=refuse)
    assert rows[0]["std"] is None and rows[0]["delta_ci_high"] is None
    assert set(HOSTILE) <= {r["baseline"] for r in rows}


def test_latex_specials_are_literal(table):
    tex = render(table, "latex")
    assert "\\textbf{x}_&" not in tex and "\\textbackslash{}textbf\\{x\\}\\_\\&\\%\\$\\#" in tex
    lines = tex.splitlines()
    body = lines[lines.index("\\toprule") + 1:lines.index("\\bottomrule")]
    body = [line for line in body if line != "\\midrule"]
    columns = {len(re.findall(r"(?<!\\)&", line)) for line in body}
    assert len(columns) == 1  # no name added a column
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex


def test_rich_prints_names_as_text():
    from rich.console import Console

    items = {str(i): float(i % 2) for i in range(10)}
    records = [make_record(name, 0, items, config_hash=f"{i:016x}") for i, name in enumerate(HOSTILE)]
    console = Console(record=True, width=400, file=io.StringIO())
    console.print(render(aggregate(records, rounds=100), "rich"))
    text = console.export_text()
    assert "[/x]" in text and "<script>alert(1)</script>|x" in text and "two lines" in text


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.parametrize("fmt", ["html"])
def test_html_has_only_its_own_script(table, fmt):
    page = render(table, fmt)
    parser = _Collect()
    parser.feed(page)
    assert parser.scripts == 1  # the page's sorting script; the hostile name is text
    assert any("<script>alert(1)</script>|x" in t for t in parser.text)


# How each format must write each hostile name, written out by hand (not by calling the escapers)
WRITTEN = {
    "md": ["&lt;script&gt;alert(1)&lt;/script&gt;\\|x", "two lines", '=HYPERLINK("http://evil","x")', "\\[/x\\]",
           "\\\\textbf{x}\\_&amp;%$#", "@SUM(1)", "-2+3"],
    "html": ["&lt;script&gt;alert(1)&lt;/script&gt;|x", "two lines", "=HYPERLINK(&quot;http://evil&quot;,&quot;x&quot;)",
             "[/x]", "\\textbf{x}_&amp;%$#", "@SUM(1)", "-2+3"],
    "latex": ["\\textless{}script\\textgreater{}alert(1)\\textless{}/script\\textgreater{}\\textbar{}x", "two lines",
              '=HYPERLINK("http://evil","x")', "[/x]", "\\textbackslash{}textbf\\{x\\}\\_\\&\\%\\$\\#", "@SUM(1)", "-2+3"],
    "csv": ["<script>alert(1)</script>|x", "two\nlines", "'=HYPERLINK(\"http://evil\",\"x\")", "[/x]",
            "\\textbf{x}_&%$#", "'@SUM(1)", "'-2+3"],
    "json": HOSTILE,
    "rich": ["<script>alert(1)</script>|x", "two lines", '=HYPERLINK("http://evil","x")', "[/x]", "\\textbf{x}_&%$#",
             "@SUM(1)", "-2+3"],
}
# what must never appear raw in a format's output (markup, a line break inside a row)
NEVER = {"md": ["<script>", "two\nlines"], "html": ["<script>alert", "two\nlines"], "latex": ["\\textbf{x}", "two\nlines"]}


def _baseline_texts(table, fmt: str) -> list[str]:
    """Every place a baseline name can be written in one format's output, as one list of strings."""
    if fmt == "csv":
        return [row["baseline"] for row in csv.DictReader(io.StringIO(render(table, fmt)))]
    if fmt == "json":
        return [row["baseline"] for row in json.loads(render(table, fmt))]
    if fmt == "rich":
        from rich.console import Console

        console = Console(record=True, width=1000, file=io.StringIO())
        console.print(render(table, fmt))
        return console.export_text().splitlines()
    return render(table, fmt).splitlines()


def test_the_set_covers_every_format():
    assert set(WRITTEN) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(WRITTEN))
def test_every_format_writes_each_hostile_name_escaped(table, fmt):
    texts = _baseline_texts(table, fmt)
    for name, written in zip(HOSTILE, WRITTEN[fmt]):
        if fmt in ("csv", "json"):
            assert written in texts, (name, written)  # the field itself, exactly
        else:
            assert any(written in line for line in texts), (name, written)  # on one line of the output
    joined = "\n".join(texts)
    for raw in NEVER.get(fmt, []):
        assert raw not in joined, raw


def test_escapers_by_hand():
    assert markdown_cell("a|b\nc") == "a\\|b c"
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("\tx") == "'\tx" and csv_cell("ok") == "ok"
    assert latex_text("50%_a&b") == "50\\%\\_a\\&b"
