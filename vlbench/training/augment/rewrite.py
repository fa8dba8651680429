"""How a horizontal flip rewrites a task's texts: left and right words swapped, over a vocabulary at once.

A mirrored image turns "the circle to the left of the square" into "... to the right of ...", so every text
that describes the image (question, answers, captions, targets) swaps its side words. Texts are already
token ids (or answer classes) when batches are built, so the swap is a table over the vocabulary: each
entry's partner is the entry whose text is the entry's text with the words swapped (WordPiece's "##"
continuations and joiners included: "left" + "##most" becomes "right" + "##most"). An entry that names a
side but whose partner is not in the vocabulary (an answer class "left" without "right") cannot be
rewritten: an example holding one is left unflipped rather than given a wrong label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch

__all__ = ["ENGLISH_SIDES", "GERMAN_SIDES", "swap_words", "TextRewrite", "vocabulary_rewrite"]

ENGLISH_SIDES: tuple[tuple[str, str], ...] = (
    ("left", "right"), ("leftmost", "rightmost"), ("lefthand", "righthand"), ("leftward", "rightward"),
    ("leftwards", "rightwards"),
)
GERMAN_SIDES: tuple[tuple[str, str], ...] = (
    ("links", "rechts"), ("linke", "rechte"), ("linken", "rechten"), ("linker", "rechter"), ("linkes", "rechtes"),
    ("linkem", "rechtem"),
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _same_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def swap_words(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``text`` with every side word replaced by its mirror image (case kept: Left -> Right, LEFT -> RIGHT)."""
    table = {a: b for a, b in pairs} | {b: a for a, b in pairs}

    def swap(match: re.Match) -> str:
        word = match.group()
        partner = table.get(word.lower())
        return _same_case(partner, word) if partner is not None else word

    return _WORD.sub(swap, text)


@dataclass(frozen=True)
class TextRewrite:
    """A flip's rewrite of one batch tensor: token ids (``ids``) or per-class scores (``columns``).

    ``partner[v]`` is the entry that replaces entry ``v`` (itself when it names no side); ``unpaired[v]``
    marks entries that name a side but have no partner. ``owner`` names the batch tensor that says which
    example each row belongs to (decoder targets: several rows per example); None: row i is example i.
    """

    key: str
    kind: Literal["ids", "columns"]
    partner: torch.Tensor
    unpaired: torch.Tensor
    owner: Optional[str] = None

    def _owners(self, batch: dict[str, torch.Tensor], rows: int) -> torch.Tensor:
        if self.owner is None:
            return torch.arange(rows, device=batch[self.key].device)
        return batch[self.owner]

    def blocked(self, batch: dict[str, torch.Tensor], examples: int) -> torch.Tensor:
        """(examples,) bool: the examples whose rows hold an entry that cannot be rewritten."""
        values = batch[self.key]
        unpaired = self.unpaired.to(values.device)
        if self.kind == "ids":
            hit = (unpaired[values.clamp_min(0)] & (values >= 0)).any(1)
        else:
            hit = ((values != 0) & unpaired[None, :]).any(1)
        out = torch.zeros(examples, dtype=torch.long, device=values.device)
        out.index_add_(0, self._owners(batch, values.shape[0]), hit.long())
        return out > 0

    def apply(self, batch: dict[str, torch.Tensor], flipped: torch.Tensor) -> torch.Tensor:
        """The tensor with the rows of flipped examples rewritten (negative ids, e.g. ignored labels, kept)."""
        values = batch[self.key]
        partner = self.partner.to(values.device)
        if self.kind == "ids":
            swapped = torch.where(values >= 0, partner[values.clamp_min(0)], values)
        else:
            swapped = values.index_select(1, partner)
        rows = flipped.to(values.device)[self._owners(batch, values.shape[0])]
        return torch.where(rows[:, None], swapped, values)


def vocabulary_rewrite(key: str, entries: Sequence[str], pairs: Sequence[tuple[str, str]], *,
                       kind: Literal["ids", "columns"] = "ids", owner: Optional[str] = None) -> Optional[TextRewrite]:
    """The rewrite of a tensor whose values index ``entries`` (a vocabulary, or answer classes); None: no entry
    names a side, so the flip leaves the tensor as it is."""
    index: dict[str, int] = {}
    for i, entry in enumerate(entries):
        index.setdefault(entry, i)
    partner = torch.arange(len(entries))
    unpaired = torch.zeros(len(entries), dtype=torch.bool)
    for i, entry in enumerate(entries):
        swapped = swap_words(entry, pairs)
        if swapped == entry:
            continue
        j = index.get(swapped)
        if j is None:
            unpaired[i] = True
        else:
            partner[i] = j
    if not unpaired.any() and bool((partner == torch.arange(len(entries))).all()):
        return None
    return TextRewrite(key, kind, partner, unpaired, owner)
