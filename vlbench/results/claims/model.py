"""What a claim is on the page, how its rows get their verdicts, and the multiple-testing correction.

Every row with a p-value enters one family; Holm's (1979) step-down correction over that family bounds
the chance of any false "supported" on the page at ``alpha``. A row is *supported* when its effect is in
the claimed direction and its Holm-adjusted p is below ``alpha``; for a claim of no effect, when two
one-sided tests (TOST, Schuirmann 1987) reject a difference beyond the stated margin. A claim quantifies
over its rows: ``any`` (at least one tested row supported) or ``every`` (every tested row supported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from vlbench.results.seeditem import SeedItemTest

__all__ = ["SUPPORTED", "NOT_SUPPORTED", "NOT_TESTED", "Row", "Claim", "holm", "tost_p", "decide"]

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_TESTED = "not tested here"


@dataclass
class Row:
    """One comparison a claim rests on: its effect, interval, test, p-value, records and commands."""

    comparison: str
    effect: Optional[float] = None
    ci: Optional[tuple[Optional[float], Optional[float]]] = None
    unit: str = ""
    test: str = ""
    p_value: Optional[float] = None  # the p that enters the family (TOST p for an equivalence row)
    equivalence: bool = False  # the claim is "no difference beyond the margin"
    threshold: float = 0.0  # the claimed direction: effect above this
    percent: bool = False  # effect and interval are shares, shown in percent
    rests_on: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocker: Optional[str] = None  # a condition of the claim the records fail, whatever the test says
    why_untested: str = ""
    p_holm: Optional[float] = None
    verdict: str = NOT_TESTED


@dataclass
class Claim:
    """A claim of the literature: its wording, papers, what counts as support, and its rows."""

    number: str
    title: str
    statement: str
    sources: str
    definition: str
    quantifier: str  # "any" or "every"
    rows: list[Row] = field(default_factory=list)
    missing: str = ""  # why nothing was tested: which records are missing
    to_make: list[str] = field(default_factory=list)  # commands that would make the missing records
    verdict: str = NOT_TESTED
    summary: str = ""


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def tost_p(test: SeedItemTest, margin: float, level: float = 0.95) -> float:
    """Two one-sided tests of ``|delta| < margin`` on the test's t distribution: the larger one-sided p."""
    from scipy import stats

    if not math.isfinite(test.df) or test.ci_high == test.ci_low:
        return 0.0 if abs(test.delta) < margin else 1.0
    se = (test.ci_high - test.ci_low) / (2 * float(stats.t.ppf(0.5 + level / 2, test.df)))
    below = float(stats.t.sf((test.delta + margin) / se, test.df))  # H0: delta <= -margin
    above = float(stats.t.cdf((test.delta - margin) / se, test.df))  # H0: delta >= margin
    return max(below, above)


def decide(claims: Sequence[Claim], alpha: float = 0.05) -> None:
    """Holm-correct every row's p over the page, then give each row and each claim its verdict."""
    rows = [row for claim in claims for row in claim.rows if row.p_value is not None]
    for row, adjusted in zip(rows, holm([row.p_value for row in rows])):
        row.p_holm = adjusted
    for claim in claims:
        for row in claim.rows:
            if row.p_value is None:
                row.verdict = NOT_TESTED
            elif row.blocker:
                row.verdict = NOT_SUPPORTED
            elif row.p_holm < alpha and (row.equivalence or (row.effect is not None and row.effect > row.threshold)):
                row.verdict = SUPPORTED
            else:
                row.verdict = NOT_SUPPORTED
        tested = [r for r in claim.rows if r.verdict != NOT_TESTED]
        held = [r for r in tested if r.verdict == SUPPORTED]
        if not tested:
            claim.verdict = NOT_TESTED
        elif claim.quantifier == "any":
            claim.verdict = SUPPORTED if held else NOT_SUPPORTED
        else:
            claim.verdict = SUPPORTED if len(held) == len(tested) else NOT_SUPPORTED
        if tested:
            claim.summary = (f"{len(held)} of {len(tested)} tested comparisons supported"
                             + (f"; {len(claim.rows) - len(tested)} not tested" if len(tested) < len(claim.rows) else "")
                             + f" (the claim needs {'at least one' if claim.quantifier == 'any' else 'every one'}).")
        else:
            claim.summary = claim.missing or "no comparison could be tested."
