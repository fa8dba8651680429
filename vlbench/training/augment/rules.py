"""What a task type's labels survive: the augmentations it accepts, and the inputs it hands the augmenter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

import torch

from vlbench.specs.robustness import AugmentConfig
from vlbench.training.augment.image import Normalisation
from vlbench.training.augment.rewrite import ENGLISH_SIDES, TextRewrite, vocabulary_rewrite

__all__ = ["LabelRules", "AugmentInputs", "tokenizer_inputs"]


@dataclass(frozen=True)
class LabelRules:
    """A task type's declaration of which augmentations keep its labels (``TaskType.label_rules``).

    ``flip``: ``rewrites`` (a mirrored image keeps the labels once the texts swap their side words, listed
    in ``side_words``), ``keeps`` (no text mentions sides), or ``refused`` (with ``flip_reason``).
    ``names_colours``: its texts or answers name colours, so a hue or saturation change would contradict
    them (brightness and contrast keep a colour's name). ``text_input``: its models read an input text
    (captioning reads none: its text is the target), so text augmentations have something to change.
    """

    flip: Literal["rewrites", "keeps", "refused"] = "refused"
    flip_reason: str = "the task type does not declare how a mirrored image changes its texts"
    names_colours: bool = True
    text_input: bool = True
    side_words: tuple[tuple[str, str], ...] = ENGLISH_SIDES

    def problem(self, augment: AugmentConfig, task_type: str) -> Optional[str]:
        """Why ``augment`` would change this task type's right answers (None: it keeps them)."""
        if augment.flip and self.flip == "refused":
            return f"augment.flip is refused by task type {task_type!r}: {self.flip_reason}"
        jitter = augment.color_jitter
        if jitter is not None and jitter.changes_colours and self.names_colours:
            return (f"augment.color_jitter with hue or saturation is refused by task type {task_type!r}: its answers "
                    "and texts name colours, which a hue or saturation change contradicts; jitter brightness and "
                    "contrast only (hue: 0, saturation: 0)")
        texts = augment.text_augmentations()
        if texts and not self.text_input:
            return (f"augment.{texts[0]} changes nothing on task type {task_type!r}: its models read no input text "
                    "(the text is the target)")
        return None


@dataclass
class AugmentInputs:
    """What the augmenter needs from a prepared task: the flip's rewrites, the tokenizer's ids, the pixel scale."""

    rewrites: list[TextRewrite] = field(default_factory=list)
    special_ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    mask_id: Optional[int] = None
    pad_id: int = 0
    normalisation: Optional[Normalisation] = None


def tokenizer_inputs(tokenizer: Any, side_words: Sequence[tuple[str, str]],
                     normalisation: Optional[Normalisation]) -> AugmentInputs:
    """Augment inputs for a task whose input text (``input_ids``) is read with ``tokenizer``."""
    if tokenizer is None:
        return AugmentInputs(normalisation=normalisation)
    vocab = tokenizer.get_vocab()
    entries = [""] * (max(vocab.values(), default=-1) + 1)
    for token, i in vocab.items():
        entries[i] = token
    special = sorted(set(getattr(tokenizer, "all_special_ids", []) or []))
    rewrite = vocabulary_rewrite("input_ids", entries, side_words)
    return AugmentInputs(rewrites=[rewrite] if rewrite is not None else [],
                         special_ids=torch.tensor(special, dtype=torch.long),
                         mask_id=getattr(tokenizer, "mask_token_id", None),
                         pad_id=int(getattr(tokenizer, "pad_token_id", 0) or 0), normalisation=normalisation)
