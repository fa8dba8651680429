"""Pieces every claim builder uses: how a system is cited, a tested row from a seed-and-item test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from vlbench.results.claims.commands import run_commands
from vlbench.results.claims.model import Row
from vlbench.results.claims.systems import System, compare
from vlbench.results.seeditem import SeedItemTest

__all__ = ["Options", "cite", "test_text", "tested_row", "versus"]


@dataclass(frozen=True)
class Options:
    """What the page's definitions depend on: level, equivalence margin, PEFT thresholds."""

    alpha: float = 0.05
    margin: float = 1.0  # points of the task's primary metric: "no difference" means within +-margin
    kept: float = 0.9  # "most of the gain": at least this share of full fine-tuning's gain over the floor
    max_share: float = 0.1  # "a small share of its parameters": at most this share of full fine-tuning's trainable ones


def cite(system: System) -> str:
    """``task/dataset baseline: seeds 0, 1, 2; config <hash>; <folder>``."""
    folder = system.first.get("_path")
    where = f"; {Path(folder).parent}" if folder else ""
    return (f"{system.task}/{system.dataset} {system.baseline}: seeds {', '.join(str(s) for s in system.seeds)}; "
            f"config {system.config_hash[:12]}{where}")


def test_text(test: SeedItemTest) -> str:
    """The test's name and its sizes, as the table prints them."""
    return (f"{test.method}; {test.n_seeds[0]} vs {test.n_seeds[1]} seeds, {test.n_items} items, df {test.df:.1f}"
            if test.n_items else f"{test.method}; {test.n_seeds[0]} vs {test.n_seeds[1]} seeds, df {test.df:.1f}")


def tested_row(comparison: str, test: Optional[SeedItemTest], why: str, unit: str, systems: list[System]) -> Row:
    """A row from a test of A against B (the claim expects A above B); untested, and why, when it could not run."""
    row = Row(comparison, unit=unit, rests_on=[cite(s) for s in systems],
              commands=run_commands([s.records for s in systems]))
    if test is None:
        row.why_untested = why
        return row
    row.effect, row.ci, row.p_value = test.delta, (test.ci_low, test.ci_high), test.p_value
    row.test = test_text(test)
    return row


def versus(a: System, b: System) -> tuple[Row, Optional[SeedItemTest]]:
    """A against B on A's primary metric, by the seed-and-item test: the row and the test (None if not run)."""
    metric = a.metric or ""
    test, why = compare(a, b, metric) if metric else (None, "the records name no primary metric")
    return tested_row(f"{a.baseline} vs {b.baseline} ({a.task}/{a.dataset})", test, why, metric, [a, b]), test
