"""Task-aware data augmentation of training batches (``training.augment``; docs/robustness.md).

* :mod:`~vlbench.training.augment.image`: flip, resized crop, rotation, colour jitter on pixel tensors;
* :mod:`~vlbench.training.augment.text`: word-order noise, masking and dropout of input word pieces;
* :mod:`~vlbench.training.augment.rewrite`: the flip's left/right swap over a vocabulary or answer classes;
* :mod:`~vlbench.training.augment.rules`: what a task type's labels survive, and what it hands the augmenter;
* :mod:`~vlbench.training.augment.batch`: the seeded augmenter the trainer applies to each training batch.
"""

from vlbench.training.augment.batch import BatchAugmenter
from vlbench.training.augment.rewrite import ENGLISH_SIDES, GERMAN_SIDES, TextRewrite, swap_words, vocabulary_rewrite
from vlbench.training.augment.rules import AugmentInputs, LabelRules, tokenizer_inputs

__all__ = ["BatchAugmenter", "AugmentInputs", "LabelRules", "tokenizer_inputs", "TextRewrite", "vocabulary_rewrite",
           "swap_words", "ENGLISH_SIDES", "GERMAN_SIDES"]
