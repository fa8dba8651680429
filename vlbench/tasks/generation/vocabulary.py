"""The decoder's word-level target vocabulary, built from the training targets, with exact detokenization.

Case is kept unless the task lowercases, because BLEU is case-sensitive.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["TargetVocab"]

_WORD = re.compile(r"\w+|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:])")


class TargetVocab:
    """Word-level target vocabulary: ``[PAD] [BOS] [EOS] [UNK]`` then words by frequency (ties alphabetical)."""

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")

    def __init__(self, words: Sequence[str], lowercase: bool = False) -> None:
        self.lowercase = lowercase
        self.itos = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], *, lowercase: bool = False, min_freq: int = 1) -> "TargetVocab":
        """Every word seen at least ``min_freq`` times in ``texts``."""
        counts = Counter(w for t in texts for w in cls.split(t, lowercase))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(words, lowercase)

    @staticmethod
    def split(text: str, lowercase: bool = False) -> list[str]:
        """Words and punctuation marks of ``text``."""
        return _WORD.findall(text.lower() if lowercase else text)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_length: int) -> list[int]:
        """``[BOS] words [EOS]``, truncated to ``max_length`` ids (EOS kept)."""
        ids = [self.stoi.get(w, self.UNK) for w in self.split(text, self.lowercase)]
        return [self.BOS] + ids[: max(max_length - 2, 0)] + [self.EOS]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids up to the first EOS (special tokens dropped, no space before punctuation)."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else self.itos[self.UNK])
        return _NO_SPACE_BEFORE.sub(r"\1", " ".join(words))
