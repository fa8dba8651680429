"""Question perturbations: seeded character typos and word dropout, at three rates each.

A typo touches a letter with probability ``rate``: it is swapped with the next letter, dropped, or a random
lowercase letter is inserted after it (one of the three, equally likely). Word dropout removes each word
with probability ``rate`` but always keeps one. Each text draws from its own generator, seeded by (seed,
item position, perturbation), so every baseline reads the same perturbed texts for a given seed.

No dataset vlbench reads supplies rephrased questions (the embedded shapes world asks each question with
one template), so rephrasings are not a condition: the record and the table say so instead of inventing them.
"""

from __future__ import annotations

import string
from typing import Callable

import numpy as np

__all__ = ["TEXT_PERTURBATIONS", "REPHRASINGS_NOTE", "typos", "word_dropout", "perturb_texts"]

TEXT_PERTURBATIONS: dict[str, tuple[float, ...]] = {"typos": (0.05, 0.1, 0.2), "word_dropout": (0.1, 0.2, 0.3)}
REPHRASINGS_NOTE = "no dataset vlbench reads supplies rephrased questions (the shapes world has one template each)"
_LETTERS = string.ascii_lowercase


def typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """``text`` with each letter, with probability ``rate``, swapped with the next, dropped, or followed by a new one."""
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        ch = chars[i]
        if not ch.isalpha() or rng.random() >= rate:
            out.append(ch)
            i += 1
            continue
        kind = int(rng.integers(3))
        if kind == 0 and i + 1 < len(chars) and chars[i + 1].isalpha():  # swap with the next letter
            out += [chars[i + 1], ch]
            i += 2
            continue
        if kind == 1:  # drop
            i += 1
            continue
        out += [ch, _LETTERS[int(rng.integers(len(_LETTERS)))]]  # insert after it (or a swap with no letter next)
        i += 1
    return "".join(out)


def word_dropout(text: str, rate: float, rng: np.random.Generator) -> str:
    """``text`` with each word removed with probability ``rate``; at least one word stays."""
    words = text.split()
    if len(words) <= 1:
        return text
    keep = rng.random(len(words)) >= rate
    if not keep.any():
        keep[int(rng.integers(len(words)))] = True
    return " ".join(w for w, k in zip(words, keep) if k)


_FUNCTIONS: dict[str, Callable[[str, float, np.random.Generator], str]] = {"typos": typos, "word_dropout": word_dropout}


def perturb_texts(texts: list[str], kind: str, rate: float, seed: int) -> list[str]:
    """Every text perturbed by ``kind`` at ``rate``; text i draws from a generator seeded by (seed, i, kind)."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"unknown text perturbation {kind!r}; use one of {', '.join(_FUNCTIONS)}")
    index = list(_FUNCTIONS).index(kind)
    return [_FUNCTIONS[kind](t, rate, np.random.default_rng([int(seed), i, index])) for i, t in enumerate(texts)]
