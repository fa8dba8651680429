"""Escaping of every string that comes from a record, one function per output format."""

from __future__ import annotations

import html
import re

__all__ = ["html_text", "markdown_cell", "csv_cell", "latex_text", "latex_cell", "rich_text", "one_line"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: object) -> str:
    """A string on one line: newlines, tabs and other control characters become spaces."""
    return _CONTROL.sub(" ", str(text))


def html_text(text: object) -> str:
    """Text for HTML element content or a quoted attribute (``& < > " '`` escaped)."""
    return html.escape(str(text), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def markdown_cell(text: object) -> str:
    """Text for one Markdown table cell: one line, pipes and markup escaped, HTML made inert."""
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line(text))
    # GitHub renders raw HTML in tables; entities keep a <script> or <img> from ever being markup
    return escaped.replace("&", "&amp;").replace("\\<", "&lt;").replace("\\>", "&gt;")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(text: object) -> str:
    """A CSV field that a spreadsheet will not run as a formula (OWASP: prefix a quote)."""
    value = str(text)
    return "'" + value if value.startswith(_FORMULA_START) else value


_LATEX = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def latex_text(text: object) -> str:
    """Text for LaTeX: one line, every special character written as a literal."""
    return "".join(_LATEX.get(c, c) for c in one_line(text))


def latex_cell(text: object) -> str:
    """:func:`latex_text` with the tables' own symbols (± − — Δ) written the LaTeX way (works under pdflatex)."""
    out = latex_text(text)
    for symbol, tex in (("±", "$\\pm$"), ("−", "$-$"), ("—", "---"), ("Δ", "$\\Delta$")):
        out = out.replace(symbol, tex)
    return out


def rich_text(text: object) -> str:
    """Text for a string that rich will parse as console markup (``[`` escaped, on one line)."""
    from rich.markup import escape

    return escape(one_line(text))
