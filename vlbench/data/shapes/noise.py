"""Ten human-like annotator answers per question: realistic disagreement plus surface noise.

Disagreement is a plausible confusion (a neighbouring colour name, a near shape, a count off by one,
yes for no); surface noise (case, punctuation, number words, articles, stray spaces) is exactly what
the official VQA normalization removes, so a prediction is scored on content, as with real VQA data.
The correct answer always stays the strict plurality, so ``multiple_choice_answer`` is the truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vlbench.data.shapes.world import COLORS, SHAPES

__all__ = ["AGREEMENT", "NUMBER_WORDS", "Annotation", "alternatives", "surface_form", "annotate"]

N_ANNOTATORS = 10
# P(k of 10 annotators give the correct content) per question family: most agree, some split, a few
# are ambiguous. Counting splits people most, yes/no least (as in VQA v2); yes/no is kept high also
# because under soft accuracy every disagreeing yes/no question hands a blind guess partial credit.
_AGREE_OTHER = {10: 0.42, 9: 0.22, 8: 0.13, 7: 0.07, 6: 0.05, 5: 0.04, 4: 0.03, 3: 0.03, 2: 0.01}
_AGREE_NUMBER = {10: 0.30, 9: 0.21, 8: 0.15, 7: 0.10, 6: 0.07, 5: 0.06, 4: 0.04, 3: 0.05, 2: 0.02}
_AGREE_YES_NO = {10: 0.52, 9: 0.24, 8: 0.12, 7: 0.07, 6: 0.05}
AGREEMENT: dict[str, dict[int, float]] = {
    "color": _AGREE_OTHER,
    "shape": _AGREE_OTHER,
    "count": _AGREE_NUMBER,
    "exist": _AGREE_YES_NO,
    "relation": _AGREE_YES_NO,
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
_NEIGHBOUR_COLORS: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink"),
    "green": ("teal", "lime"),
    "blue": ("cyan", "navy"),
    "yellow": ("orange", "gold"),
    "purple": ("violet", "pink"),
}
_NEAR_SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("oval", "ball"),
    "square": ("rectangle", "box"),
    "triangle": ("pyramid", "arrow"),
}
_CONFIDENCE_RIGHT = (0.85, 0.12, 0.03)  # P(yes, maybe, no) for annotators who got it right
_CONFIDENCE_WRONG = (0.45, 0.40, 0.15)
_CONFIDENCE = ("yes", "maybe", "no")


@dataclass(frozen=True)
class Annotation:
    """Ten raw answers with their confidences and the most common normalized answer."""

    answers: list[str]
    confidences: list[str]
    multiple_choice_answer: str


def alternatives(family: str, truth: str) -> tuple[list[str], np.ndarray]:
    """Plausible wrong answers for ``truth`` and their relative weights (near confusions weigh more)."""
    if family in ("exist", "relation"):
        return (["no"] if truth == "yes" else ["yes"]), np.array([1.0])
    if family == "count":
        t = int(truth)
        alts = [(str(v), 4.0 if abs(v - t) == 1 else 1.0) for v in (t - 2, t - 1, t + 1, t + 2) if v >= 0]
        return [a for a, _ in alts], np.array([w for _, w in alts])
    if family == "color":
        names = list(_NEIGHBOUR_COLORS[truth]) + [c for c in COLORS if c != truth]
        return names, np.array([3.0] * len(_NEIGHBOUR_COLORS[truth]) + [1.0] * (len(COLORS) - 1))
    if family == "shape":
        names = list(_NEAR_SHAPES[truth]) + [s for s in SHAPES if s != truth]
        return names, np.array([3.0] * len(_NEAR_SHAPES[truth]) + [1.0] * (len(SHAPES) - 1))
    raise ValueError(f"unknown question family {family!r}")


def surface_form(content: str, family: str, u: np.ndarray) -> str:
    """One annotator's spelling of ``content``, driven by uniforms ``u`` (6 values in [0, 1))."""
    text = content
    if content.isdigit() and u[0] < 0.35 and int(content) < len(NUMBER_WORDS):
        # the official map reads both 'none' and 'zero' as 0
        text = "none" if content == "0" and u[5] < 0.3 else NUMBER_WORDS[int(content)]
    if family == "shape" and u[1] < 0.12:
        text = ("the " if u[5] < 0.2 else "a ") + text
    if u[2] < 0.12:
        text = text[:1].upper() + text[1:]
    elif u[2] > 0.97:
        text = text.upper()
    if u[3] < 0.05:
        text += "."
    elif u[3] > 0.98:
        text += "!"
    if u[4] < 0.04:
        text += " "
    elif u[4] > 0.98:
        text = " " + text
    return text


def _agreement(n_alternatives: int, k: int) -> int:
    # the truth must stay the strict plurality: each alternative may be chosen at most k - 1 times
    while (N_ANNOTATORS - k) > (k - 1) * n_alternatives:
        k += 1
    return k


def annotate(truths: Sequence[str], families: Sequence[str], rng: np.random.Generator) -> list[Annotation]:
    """Annotations for each (truth, family) pair; all randomness comes from ``rng`` in one batch."""
    n = len(truths)
    # one uniform per question mapped through its family's agreement CDF keeps the draws batched
    level_u = rng.random(n)
    family_array = np.array(families, dtype=object)
    ks = np.zeros(n, dtype=np.int64)
    for family, table in AGREEMENT.items():
        levels = np.array(sorted(table))
        cdf = np.cumsum([table[k] for k in levels]) / sum(table.values())
        rows = family_array == family
        ks[rows] = levels[np.minimum(np.searchsorted(cdf, level_u[rows], side="right"), len(levels) - 1)]
    order = rng.random((n, N_ANNOTATORS)).argsort(axis=1)  # which annotators are the right ones
    pick = rng.random((n, N_ANNOTATORS))
    spelling = rng.random((n, N_ANNOTATORS, 6))
    confidence = rng.random((n, N_ANNOTATORS))
    right_cdf = np.cumsum(_CONFIDENCE_RIGHT)
    wrong_cdf = np.cumsum(_CONFIDENCE_WRONG)
    out: list[Annotation] = []
    for q in range(n):
        truth, family = truths[q], families[q]
        alts, weights = alternatives(family, truth)
        k = _agreement(len(alts), int(ks[q]))
        right = set(order[q, :k].tolist())
        taken = np.zeros(len(alts), dtype=np.int64)
        contents: list[str] = []
        confs: list[str] = []
        for j in range(N_ANNOTATORS):
            if j in right:
                contents.append(truth)
                cdf = right_cdf
            else:
                open_weights = np.where(taken < k - 1, weights, 0.0)
                cum = np.cumsum(open_weights)
                a = int(np.searchsorted(cum, pick[q, j] * cum[-1], side="right"))
                a = min(a, len(alts) - 1)
                taken[a] += 1
                contents.append(alts[a])
                cdf = wrong_cdf
            confs.append(_CONFIDENCE[min(int(np.searchsorted(cdf, confidence[q, j], side="right")), 2)])
        answers = [surface_form(c, family, spelling[q, j]) for j, c in enumerate(contents)]
        if len(set(answers)) == 1:
            # the official evaluator skips normalizing ground truth when all ten answers are identical,
            # so an all-identical set must already be in normalized form or no prediction could match it
            answers = list(contents)
        counts = Counter(contents)
        best = max(counts.values())
        majority = truth if counts[truth] == best else sorted(c for c, v in counts.items() if v == best)[0]
        out.append(Annotation(answers, confs, majority))
    return out
