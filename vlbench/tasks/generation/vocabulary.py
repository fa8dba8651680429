"""The decoder's word-level target vocabulary, built from the training targets, with reversible tokenization.

A target is cut into words (``\\w+``) and single marks (any other non-space character). Where two pieces
touch (no space between them in the text) the mark carries a joiner, ``￭`` (U+FFED, OpenNMT Tokenizer's
``joiner_annotate``): on its right when the left piece is a mark, else on its left. So ``T-Shirt`` is
``T ￭-￭ Shirt``, ``man's`` is ``man ￭'￭ s``, ``Hund.`` is ``Hund ￭.``, and French ``« Bonjour ! »`` keeps
its spaces: ``« Bonjour ! »``. Decoding puts one space between pieces except where a joiner says they touch,
so a text whose spaces are single spaces (no leading or trailing one) comes back exactly; the decoder never
adds or removes a space the model did not predict. (Runs of spaces become one: sacreBLEU's and the PTB
tokenizer's scores do not see them. The one ambiguity: a ``￭`` of the text itself that touches its right
neighbour may come back with a space after it.)

Why joiners rather than a subword tokenizer: words stay whole vocabulary entries (the same words, the same
number of target tokens per sentence, so ``max_target_length`` truncates as before) and only marks gain
variants (``-``, ``￭-``, ``-￭``, ``￭-￭``), which keeps the decoder's output layer and the baselines'
behaviour what they were. The scheme before joiners (``words/1``) joined every piece with a space and took
the space away before ``. , ! ? ; :`` only, so ``T-Shirt`` came out as ``T - Shirt``; runs scored with it
have another config hash (:data:`TARGET_TOKENIZATION` enters it) and never mix with later ones.

Case is kept unless the task lowercases, because BLEU is case-sensitive.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any, Iterable, Sequence

__all__ = ["TargetVocab", "JOINER", "TARGET_TOKENIZATION", "tokenize", "detokenize"]

JOINER = "\uffed"  # ￭
# the scheme's name and version: it is part of every generation run's identity (see Seq2SeqTask.code_identity)
TARGET_TOKENIZATION = "words+joiners/2"
_PIECE = re.compile(r"(?P<word>\w+)|(?P<mark>[^\w\s])")


def tokenize(text: str, lowercase: bool = False) -> list[str]:
    """Words and marks of ``text``; a mark that touches a neighbour carries :data:`JOINER` on that side."""
    tokens: list[str] = []
    end, left_is_mark = -1, False
    for match in _PIECE.finditer(text.lower() if lowercase else text):
        piece, is_mark = match.group(), match.lastgroup == "mark"
        if match.start() == end:  # no space between this piece and the last: \w+ is greedy, so one is a mark
            if left_is_mark:
                tokens[-1] += JOINER
            else:
                piece = JOINER + piece
        tokens.append(piece)
        end, left_is_mark = match.end(), is_mark
    return tokens


def _joiners(token: str) -> tuple[bool, bool]:
    """Whether ``token`` joins its left and its right neighbour (a lone ``￭`` is a mark of the text)."""
    left = len(token) > 1 and token.startswith(JOINER)
    right = len(token) > 1 + left and token.endswith(JOINER)
    return left, right


def detokenize(tokens: Iterable[str]) -> str:
    """The text of ``tokens``: one space between pieces, none where a joiner says they touch."""
    out: list[str] = []
    glued = True  # nothing before the first piece
    for token in tokens:
        left, right = _joiners(token)
        if out and not (glued or left):
            out.append(" ")
        out.append(token[int(left): len(token) - int(right)])
        glued = right
    return "".join(out)


class TargetVocab:
    """Word-level target vocabulary: ``[PAD] [BOS] [EOS] [UNK]`` then tokens by frequency (ties alphabetical)."""

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")

    def __init__(self, words: Sequence[str], lowercase: bool = False) -> None:
        self.lowercase = lowercase
        self.itos = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], *, lowercase: bool = False, min_freq: int = 1) -> "TargetVocab":
        """Every token seen at least ``min_freq`` times in ``texts``."""
        counts = Counter(w for t in texts for w in tokenize(t, lowercase))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(words, lowercase)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_length: int) -> list[int]:
        """``[BOS] tokens [EOS]``, truncated to ``max_length`` ids (EOS kept)."""
        ids = [self.stoi.get(w, self.UNK) for w in tokenize(text, self.lowercase)]
        return [self.BOS] + ids[: max(max_length - 2, 0)] + [self.EOS]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids up to the first EOS (PAD and BOS dropped, spaces only where no joiner glues)."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else self.itos[self.UNK])
        return detokenize(words)

    def describe(self) -> dict[str, Any]:
        """What a record says about the targets: the tokenization scheme, the size and a digest of the entries."""
        blob = json.dumps([TARGET_TOKENIZATION, self.lowercase, self.itos], ensure_ascii=False, separators=(",", ":"))
        return {"tokenization": TARGET_TOKENIZATION, "size": len(self), "lowercase": self.lowercase,
                "signature": hashlib.sha256(blob.encode()).hexdigest()[:16]}
