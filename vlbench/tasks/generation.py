"""Shared pieces of text-generation task types (captioning, translation): target vocabulary, search, base task.

* :class:`TargetVocab` is the decoder's word-level vocabulary, built from the training targets (case kept
  unless the task lowercases, because BLEU is case-sensitive), with exact detokenization.
* :func:`greedy_search` and :func:`beam_search` decode any model with ``start(batch)`` / ``step(state,
  tokens)`` (see ``vlbench.models.decoder.EncoderDecoder``). Beam search ranks hypotheses by their summed
  log-probability; a finished hypothesis stays in the beam with its score frozen, so beam size 1 is
  exactly greedy search. The returned hypothesis maximises ``score / length ** length_penalty`` among
  the final beams (``length_penalty`` 0: the most likely sequence found).
* :class:`Seq2SeqTask` is a task type that feeds an encoder (text and/or image) and trains the decoder
  with teacher forcing; subclasses say where sources, images and references come from and how to score.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Optional, Sequence

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from vlbench.data.pipeline import encode_texts, image_inputs, split_roles, trim_tokens
from vlbench.models.decoder import DecoderSpec, EncoderDecoder, build_text_decoder
from vlbench.tasks.base import EvalResult, TaskOptions, TaskType

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = [
    "TargetVocab",
    "SearchOutput",
    "greedy_search",
    "beam_search",
    "generate",
    "sequence_log_prob",
    "Seq2SeqOptions",
    "Seq2SeqTask",
]

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


class SearchOutput:
    """Generated ids (N, L) without BOS (EOS then PAD after the end) and their summed log-probabilities (N,)."""

    def __init__(self, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        self.tokens = tokens
        self.scores = scores


@torch.no_grad()
def greedy_search(model: Any, batch: dict[str, torch.Tensor], *, max_length: int, bos: int, eos: int, pad: int) -> SearchOutput:
    """Most likely next token at every step, until EOS or ``max_length`` generated tokens."""
    state = model.start(batch)
    n = state.memory.shape[0]
    device = state.memory.device
    last = torch.full((n, 1), bos, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    scores = torch.zeros(n, device=device)
    out = []
    for _ in range(max_length):
        log_probs, state = model.step(state, last)
        best, token = log_probs.max(-1)
        scores += torch.where(finished, torch.zeros_like(best), best)
        token = torch.where(finished, torch.full_like(token, pad), token)
        out.append(token)
        finished |= token == eos
        last = token.unsqueeze(1)
        if bool(finished.all()):
            break
    return SearchOutput(torch.stack(out, 1) if out else torch.zeros((n, 0), dtype=torch.long, device=device), scores)


def _lengths(tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Generated length counting EOS (the whole row when there is none)."""
    is_eos = tokens == eos
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(tokens[:, 0], tokens.shape[1]))
    return first.clamp(min=1)


@torch.no_grad()
def beam_search(
    model: Any,
    batch: dict[str, torch.Tensor],
    *,
    beam_size: int,
    max_length: int,
    bos: int,
    eos: int,
    pad: int,
    length_penalty: float = 0.0,
) -> SearchOutput:
    """Beam search over summed log-probabilities; returns the best final beam per example."""
    state = model.start(batch)
    n = state.memory.shape[0]
    k = beam_size
    device = state.memory.device
    state = state.select(torch.arange(n, device=device).repeat_interleave(k))
    # only the first beam is live at the start, so the k beams do not all pick the same tokens
    scores = torch.full((n, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(n * k, dtype=torch.bool, device=device)
    history = torch.zeros((n * k, 0), dtype=torch.long, device=device)
    last = torch.full((n * k, 1), bos, dtype=torch.long, device=device)
    for _ in range(max_length):
        log_probs, state = model.step(state, last)
        vocab = log_probs.shape[-1]
        # a finished beam can only continue with PAD, at no cost, so its score stays as it was
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, pad] = 0.0
        log_probs = torch.where(finished.unsqueeze(1), frozen, log_probs)
        total = (scores.view(-1, 1) + log_probs).view(n, k * vocab)
        scores, flat = total.topk(k, dim=1)
        origin = flat // vocab + torch.arange(n, device=device).unsqueeze(1) * k
        token = (flat % vocab).view(-1)
        origin = origin.view(-1)
        state = state.select(origin)
        history = torch.cat([history.index_select(0, origin), token.unsqueeze(1)], 1)
        finished = finished.index_select(0, origin) | (token == eos)
        last = token.unsqueeze(1)
        if bool(finished.all()):
            break
    ranking = scores
    if length_penalty:
        ranking = scores / _lengths(history, eos).view(n, k).float() ** length_penalty
    best = ranking.argmax(1) + torch.arange(n, device=device) * k
    return SearchOutput(history.index_select(0, best), scores.view(-1).index_select(0, best))


def generate(model: Any, batch: dict[str, torch.Tensor], *, beam_size: int, max_length: int, length_penalty: float,
             vocab: TargetVocab) -> SearchOutput:
    """Greedy search for beam size 1, beam search otherwise."""
    common = dict(max_length=max_length, bos=vocab.BOS, eos=vocab.EOS, pad=vocab.PAD)
    if beam_size <= 1:
        return greedy_search(model, batch, **common)
    return beam_search(model, batch, beam_size=beam_size, length_penalty=length_penalty, **common)


@torch.no_grad()
def sequence_log_prob(model: EncoderDecoder, batch: dict[str, torch.Tensor], tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Summed log-probability of generated ``tokens`` (N, L; no BOS) under teacher forcing, up to EOS."""
    n = tokens.shape[0]
    bos = torch.full((n, 1), TargetVocab.BOS, dtype=torch.long, device=tokens.device)
    inputs = torch.cat([bos, tokens[:, :-1]], 1) if tokens.shape[1] else bos[:, :0]
    keep = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) < _lengths(tokens, eos).unsqueeze(1)
    feed = dict(batch, decoder_input_ids=inputs, decoder_attention_mask=torch.ones_like(inputs),
                target_owner=torch.arange(n, device=tokens.device))
    logp = F.log_softmax(model(feed).float(), -1).gather(2, tokens.unsqueeze(2)).squeeze(2)
    return (logp * keep).sum(1)


class Seq2SeqOptions(TaskOptions):
    """Options shared by text-generation task types."""

    max_target_length: int = Field(32, ge=4, description="target ids per sequence, BOS and EOS included")
    beam_size: int = Field(3, ge=1, description="beam size on the test split (1: greedy)")
    validation_beam_size: int = Field(1, ge=1, description="beam size for per-epoch validation (1: greedy, fast)")
    length_penalty: float = Field(0.0, ge=0, description="final beams ranked by score / length ** length_penalty")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    target_min_count: int = Field(1, ge=1, description="target words seen fewer times become [UNK]")
    train_targets_per_example: Optional[int] = Field(
        None, ge=1, description="targets per example in each training epoch, cycling through all of them (None: all)"
    )
    decoder: DecoderSpec = Field(default_factory=DecoderSpec)


class Seq2SeqTask(TaskType):
    """Encoder + decoder trained with teacher forcing; subclasses provide examples, references and scoring.

    Subclasses set, in ``__init__`` before calling :meth:`_setup_targets`: ``self._image_ids[role]``
    (one image id per example), ``self._targets[role]`` (a list of target texts per example; training
    uses them all, or ``train_targets_per_example`` of them per pass, cycling; an example's rows share
    one encoder pass), and implement ``_sources(role)`` (the
    source text of each example; "" for image-only tasks) and ``score(role, hypotheses)``.
    """

    Options: ClassVar[type[TaskOptions]] = Seq2SeqOptions
    lowercase_targets: ClassVar[bool] = False

    def __init__(self, spec, dataset) -> None:
        super().__init__(spec, dataset)
        self.split_names = split_roles(spec)
        self._image_ids: dict[str, list[int]] = {}
        self._targets: dict[str, list[list[str]]] = {}
        self._source: dict[str, dict[str, torch.Tensor]] = {}
        self._target_ids: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.vocab: Optional[TargetVocab] = None
        # training passes since the model was wrapped: picks which targets an epoch uses (see collate)
        self._train_pass = 0

    # --- preparation -------------------------------------------------------------------------------
    def _setup_targets(self) -> None:
        """Build the target vocabulary from the training targets and encode every split's targets once."""
        opts = self.options
        self.vocab = TargetVocab.build(
            (t for ts in self._targets["train"] for t in ts), lowercase=self.lowercase_targets,
            min_freq=opts.target_min_count,
        )
        for role, targets in self._targets.items():
            flat = [t for ts in targets for t in ts]
            owner = torch.tensor([i for i, ts in enumerate(targets) for _ in ts], dtype=torch.long)
            ids = torch.full((len(flat), opts.max_target_length), self.vocab.PAD, dtype=torch.long)
            for row, text in enumerate(flat):
                enc = self.vocab.encode(text, opts.max_target_length)
                ids[row, : len(enc)] = torch.tensor(enc)
            # rows of example i are offsets[i]:offsets[i+1]
            offsets = torch.zeros(len(targets) + 1, dtype=torch.long)
            offsets[1:] = torch.bincount(owner, minlength=len(targets)).cumsum(0)
            self._target_ids[role] = (ids, offsets)

    def _sources(self, role: str) -> list[str]:
        """Source text of every example of a role ("" when the task reads only images)."""
        raise NotImplementedError

    def training_texts(self) -> list[str]:
        """Training source texts (the encoder's word-level vocabulary)."""
        return [t for t in self._sources("train") if t] or ["[CLS]"]

    def prepare(self, tokenizer: Any) -> None:
        """Tokenize the source side of every split (empty sources become a lone [CLS])."""
        self._source = {}
        for role in self.split_names:
            self._source[role] = encode_texts(tokenizer, self._sources(role), self.options.max_text_length)

    def build_context_extras(self) -> dict[str, Any]:
        """The target vocabulary size (for model types that want it)."""
        return {"target_vocab_size": len(self.vocab) if self.vocab else 0}

    # --- models ------------------------------------------------------------------------------------
    def wrap(self, encoder: nn.Module) -> nn.Module:
        """Encoder + the task's text decoder (same decoder for every baseline)."""
        spec = self.options.decoder
        hidden = spec.hidden_size or int(encoder.hidden_size)
        decoder = build_text_decoder(spec, hidden, len(self.vocab), self.options.max_target_length, self.vocab.PAD)
        self._train_pass = 0  # a new model starts at the first targets again, whatever ran before it
        return EncoderDecoder(encoder, decoder)

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token-level cross-entropy of the next target word (PAD ignored)."""
        return F.cross_entropy(outputs.float().reshape(-1, outputs.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=-100, label_smoothing=self.options.label_smoothing)

    # --- data --------------------------------------------------------------------------------------
    def num_examples(self, split: str) -> int:
        """Number of examples (images for captioning, sentence pairs for translation) in a role."""
        return len(self._image_ids[split])

    def loader(
        self,
        split: str,
        batch_size: int,
        modalities: tuple[str, ...],
        *,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> "DataLoader":
        """One pass over a role; each training pass over the data advances which targets are used."""
        if split == "train":
            self._train_pass += 1
        return super().loader(split, batch_size, modalities, shuffle=shuffle, generator=generator)

    def collate(self, split: str, indices: list[int], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Source tokens, pixels for image models, and (when training) every target of each example."""
        index = torch.as_tensor(indices, dtype=torch.long)
        batch: dict[str, torch.Tensor] = {"index": index}
        source = self._source.get(split)
        if source is not None:
            batch.update(trim_tokens(source, index))
        if "image" in modalities:
            batch.update(image_inputs(self, [self._image_ids[split][i] for i in indices]))
        if split == "train":
            batch.update(self._teacher_forcing(split, index))
        return batch

    def _teacher_forcing(self, split: str, index: torch.Tensor) -> dict[str, torch.Tensor]:
        ids, offsets = self._target_ids[split]
        per_example = self.options.train_targets_per_example
        rows, owner = [], []
        for position, i in enumerate(index.tolist()):
            start, end = int(offsets[i]), int(offsets[i + 1])
            count = end - start
            if per_example is None or per_example >= count:
                chosen = range(start, end)
            else:
                # pass p uses targets p*k .. p*k+k-1 (mod count): every target is seen within a few epochs
                first = max(self._train_pass - 1, 0) * per_example
                chosen = [start + (first + j) % count for j in range(per_example)]
            rows.extend(chosen)
            owner.extend([position] * len(chosen))
        targets = ids.index_select(0, torch.tensor(rows, dtype=torch.long))
        length = int((targets != TargetVocab.PAD).sum(1).max())
        targets = targets[:, :length]
        inputs = targets[:, :-1]
        labels = targets[:, 1:].masked_fill(targets[:, 1:] == TargetVocab.PAD, -100)
        return {
            "decoder_input_ids": inputs,
            "decoder_attention_mask": (inputs != TargetVocab.PAD).long(),
            "labels": labels,
            "target_owner": torch.tensor(owner, dtype=torch.long),
        }

    # --- evaluation --------------------------------------------------------------------------------
    def score(self, split: str, hypotheses: list[str]) -> EvalResult:
        """Score one hypothesis per example of a role with the task's metric."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, model: nn.Module, split: str, batch_size: int, modalities: tuple[str, ...], device: torch.device,
                beam_size: Optional[int] = None) -> list[str]:
        """One generated text per example of a role (beam size: the test setting unless given)."""
        from vlbench.distributed import eval_batches, gather_list, unwrap

        model = unwrap(model)
        model.eval()
        beam = self.options.beam_size if beam_size is None else beam_size
        # the cache holds beam_size copies of the memory: keep the number of rows per call bounded
        step = max(1, batch_size // beam)
        out: list[str] = []
        for batch in eval_batches(self, split, step, modalities):  # this process's block of the role
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # pinned on CUDA: no wait
            result = generate(model, batch, beam_size=beam, max_length=self.options.max_target_length - 1,
                              length_penalty=self.options.length_penalty, vocab=self.vocab)
            out.extend(self.vocab.decode(row) for row in result.tokens.tolist())
        return gather_list(out)

    def evaluate(self, model, split, batch_size, modalities, device) -> EvalResult:
        """Generate (greedy for validation unless configured, beam search on test) and score."""
        beam = self.options.validation_beam_size if split == "validation" else self.options.beam_size
        hypotheses = self.predict(model, split, batch_size, modalities, device, beam_size=beam)
        from vlbench.distributed import on_main

        result = on_main(lambda: self.score(split, hypotheses))  # one scorer (one METEOR JVM) per run
        result.details.setdefault("decoding", {"beam_size": beam, "length_penalty": self.options.length_penalty,
                                               "max_length": self.options.max_target_length - 1})
        return result
