"""Tokenizers: a word-level BERT WordPiece vocabulary built from training text, or a pretrained one."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from vlbench.errors import VLBenchError

__all__ = ["SPECIAL_TOKENS", "build_word_vocab", "word_level_tokenizer", "pretrained_tokenizer", "missing_pretrained_message"]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# BERT's basic tokenizer splits on whitespace and punctuation; the vocabulary must use the same units
_WORD = re.compile(r"\w+|[^\w\s]")


def build_word_vocab(texts: Iterable[str], min_freq: int = 1) -> list[str]:
    """Special tokens, then every lower-cased word/punctuation mark seen at least ``min_freq`` times."""
    counts = Counter(tok for text in texts for tok in _WORD.findall(text.lower()))
    words = sorted(w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS)
    return SPECIAL_TOKENS + words


def word_level_tokenizer(vocab: list[str]):
    """A transformers ``BertTokenizer`` over a whole-word vocabulary (for models trained from scratch)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)


def pretrained_tokenizer(name_or_path: str):
    """The tokenizer of a pretrained model: a hub id or a local directory, with a clear offline error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise VLBenchError(missing_pretrained_message(name_or_path, "tokenizer", exc)) from exc


def missing_pretrained_message(name_or_path: str, what: str, exc: Exception) -> str:
    """The one-line error for a pretrained ``what`` (tokenizer, model) that cannot be loaded offline."""
    if Path(name_or_path).exists():
        return f"cannot load the {what} from {name_or_path!r}: {str(exc).splitlines()[0]}"
    return (
        f"cannot load the {what} {name_or_path!r}: not a local directory and not in the Hugging Face cache "
        f"(offline?). Download it once with `huggingface-cli download {name_or_path} --local-dir DIR` and set "
        f"`pretrained: DIR` in the spec (or --set baseline.pretrained=DIR)."
    )
