"""Claim 3: parameter-efficient methods keep most of full fine-tuning's gain with a small share of its parameters.

For a PEFT baseline P, its full fine-tuning twin F (the same model and settings, no PEFT) and the task's
floor F0 (a baseline that reads neither text nor image: the answer prior), the share of the gain kept is
``(P - F0) / (F - F0)``. "Most" is tested as the contrast ``P - k F - (1 - k) F0 > 0`` (k the required
share) by the seed-and-item test of a contrast; the share's interval is the set of shares that contrast
does not reject at the page's level (a Fieller-type interval, found by inverting the test on a grid and
refining each edge by bisection). The parameter share is the PEFT run's trainable parameters over its
twin's (both in the records).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from vlbench.results.claims.common import Options, cite, test_text
from vlbench.results.claims.commands import run_commands
from vlbench.results.claims.model import Claim, Row
from vlbench.results.claims.systems import System, aligned_arrays, best_match, compare, full_twin, systems
from vlbench.results.seeditem import contrast_test

__all__ = ["peft_keeps_gain", "share_interval"]

_GRID = np.linspace(-1.0, 2.0, 601)  # shares searched for the interval; outside it the interval is open


def _accepts(arrays: list[list[np.ndarray]], share: float, alpha: float) -> bool:
    test = contrast_test(arrays, [1.0, -share, share - 1.0])
    return test is not None and test.p_value >= alpha


def share_interval(arrays: list[list[np.ndarray]], alpha: float) -> tuple[Optional[float], Optional[float]]:
    """The shares k whose contrast P - k F - (1 - k) F0 is not rejected; None on a side open beyond the grid.

    ``arrays``: the (seeds, items) arrays of P, F and F0, per group, as :func:`contrast_test` takes them.
    """
    accepted = [_accepts(arrays, float(k), alpha) for k in _GRID]
    if not any(accepted):
        return None, None
    first = accepted.index(True)
    last = len(accepted) - 1 - accepted[::-1].index(True)

    def edge(inside: float, outside: float) -> float:
        for _ in range(30):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if _accepts(arrays, middle, alpha) else (inside, middle)
        return inside

    low = None if first == 0 else edge(float(_GRID[first]), float(_GRID[first - 1]))
    high = None if last == len(_GRID) - 1 else edge(float(_GRID[last]), float(_GRID[last + 1]))
    return low, high


def _floor(system: System, pool: list[System]) -> Optional[System]:
    return best_match(system, [s for s in pool if s.modalities == frozenset()])


def _row(peft: System, full: System, floor: System, options: Options) -> Row:
    metric = peft.metric or ""
    row = Row(f"{peft.baseline} vs full {full.baseline}, floor {floor.baseline} ({peft.task}/{peft.dataset})",
              unit="share of the gain kept", rests_on=[cite(s) for s in (peft, full, floor)],
              commands=run_commands([s.records for s in (peft, full, floor)]))
    if peft.trainable is not None and full.trainable:
        share = peft.trainable / full.trainable
        row.notes.append(f"trainable parameters: {peft.trainable:,} of the full model's {full.trainable:,} "
                         f"({100 * share:.1f}%)")
        if share > options.max_share:
            row.blocker = f"trains {100 * share:.1f}% of the full model's parameters, above {100 * options.max_share:g}%"
    gain, why = compare(full, floor, metric)
    if gain is None or gain.delta <= 0 or gain.p_value >= options.alpha:
        row.why_untested = why or (f"full fine-tuning has no significant gain over {floor.baseline} to keep "
                                   f"(Δ {gain.delta:+.2f}, p {gain.p_value:.3g})")
        return row
    arrays, why = aligned_arrays([peft, full, floor], metric)
    test = contrast_test(arrays, [1.0, -options.kept, options.kept - 1.0]) if arrays is not None else None
    if arrays is None or test is None:
        row.why_untested = why or "needs at least 2 seeds of each system"
        return row
    means = [s.mean(metric) for s in (peft, full, floor)]
    row.effect = (means[0] - means[2]) / (means[1] - means[2])
    row.ci = share_interval(arrays, options.alpha)
    row.p_value, row.threshold, row.percent = test.p_value, options.kept, True
    row.test = (f"{test_text(test)}: P - {options.kept:g}·F - {1 - options.kept:g}·F0 = {test.delta:+.2f} {metric} "
                f"points (> 0 when at least {100 * options.kept:g}% of the gain is kept)")
    row.notes.insert(0, f"gain of full fine-tuning over {floor.baseline}: {gain.delta:+.2f} {metric}")
    return row


def peft_keeps_gain(records: list[dict[str, Any]], options: Options) -> Claim:
    """Claim 3: every PEFT run against its full fine-tuning twin and the task's floor."""
    claim = Claim(
        "3", "Parameter-efficient fine-tuning keeps most of full fine-tuning's gain with a small share of its parameters",
        f"A PEFT method keeps at least {100 * options.kept:g}% of full fine-tuning's gain over the answer floor "
        f"while training at most {100 * options.max_share:g}% of the parameters full fine-tuning trains.",
        "Houlsby et al. 2019 (ICML), adapters; Lester et al. 2021 (EMNLP), prompt tuning; Hu et al. 2022 (ICLR), "
        "LoRA; Ben Zaken et al. 2022 (ACL), BitFit; Sung et al. 2022 (CVPR), VL-Adapter",
        f"Share kept = (PEFT − floor) / (full − floor), the floor being the task's baseline that reads neither text "
        f"nor image. Supported for a PEFT run when the contrast PEFT − {options.kept:g}·full − "
        f"{1 - options.kept:g}·floor is above 0 (Holm-corrected p < {options.alpha:g}) and its trainable parameters "
        f"are at most {100 * options.max_share:g}% of its full twin's; the claim needs every PEFT run tested.",
        "every")
    pool = systems(records)
    for peft in [s for s in pool if s.field("config", "baseline", "peft") and (s.trainable or 0) > 0]:
        full, floor = full_twin(peft, pool), _floor(peft, pool)
        if full is None or floor is None:
            claim.rows.append(Row(f"{peft.baseline} ({peft.task}/{peft.dataset})", why_untested=(
                "no full fine-tuning twin (same model and settings, no PEFT) on the same data" if full is None
                else "no floor baseline (reads neither text nor image) on the same data")))
            continue
        claim.rows.append(_row(peft, full, floor, options))
    if not claim.rows:
        claim.missing = "no PEFT records."
        claim.to_make = ["vlbench run --task vqa --baseline vilt --baseline vilt-lora --baseline vilt-adapter "
                         "--baseline prior --seeds 0,1,2 --epochs 5 --set training.patience=0"]
    return claim
