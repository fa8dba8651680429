"""Shared pieces of text-generation task types (captioning, translation): target vocabulary, search, base task.

* :class:`TargetVocab` is the decoder's word-level vocabulary, built from the training targets (case kept
  unless the task lowercases, because BLEU is case-sensitive); marks that touch a neighbour carry a joiner
  (``T ￭-￭ Shirt``), so decoding gives back the text's own spacing (:func:`tokenize`, :func:`detokenize`).
* :func:`greedy_search` and :func:`beam_search` decode any model with ``start(batch)`` / ``step(state,
  tokens)`` (see ``vlbench.models.decoder.EncoderDecoder``). Beam search ranks hypotheses by their summed
  log-probability; a finished hypothesis stays in the beam with its score frozen, so beam size 1 is
  exactly greedy search. The returned hypothesis maximises ``score / length ** length_penalty`` among
  the final beams (``length_penalty`` 0: the most likely sequence found).
* :class:`Seq2SeqTask` is a task type that feeds an encoder (text and/or image) and trains the decoder
  with teacher forcing; subclasses say where sources, images and references come from and how to score.

Modules: :mod:`.vocabulary`, :mod:`.search` (greedy and beam search, sequence scores) and :mod:`.seq2seq`
(the base task type and the pure functions that encode targets and build teacher-forcing batches).
"""

from __future__ import annotations

from vlbench.tasks.generation.search import SearchOutput, beam_search, generate, greedy_search, sequence_log_prob
from vlbench.tasks.generation.seq2seq import Seq2SeqOptions, Seq2SeqTask, encode_targets, teacher_forcing_batch
from vlbench.tasks.generation.vocabulary import JOINER, TARGET_TOKENIZATION, TargetVocab, detokenize, tokenize

__all__ = [
    "TargetVocab",
    "TARGET_TOKENIZATION",
    "JOINER",
    "tokenize",
    "detokenize",
    "SearchOutput",
    "greedy_search",
    "beam_search",
    "generate",
    "sequence_log_prob",
    "Seq2SeqOptions",
    "Seq2SeqTask",
    "encode_targets",
    "teacher_forcing_batch",
]
