"""The base task type of text generation: an encoder (text and/or image) and a decoder trained with teacher forcing.

Targets are encoded once (:func:`encode_targets`) and training batches are cut from them by a pure
function of the batch's examples and the training pass (:func:`teacher_forcing_batch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from vlbench.data.pipeline import encode_texts, image_inputs, split_roles, trim_tokens
from vlbench.models.decoder import DecoderSpec, EncoderDecoder, build_text_decoder
from vlbench.tasks.base import EvalResult, TaskOptions, TaskType
from vlbench.tasks.generation.search import generate
from vlbench.tasks.generation.vocabulary import TARGET_TOKENIZATION, TargetVocab
from vlbench.training.augment import AugmentInputs, vocabulary_rewrite

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["Seq2SeqOptions", "Seq2SeqTask", "encode_targets", "teacher_forcing_batch"]


def encode_targets(vocab: TargetVocab, targets: list[list[str]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every target of every example as a PAD-filled row of ids, and offsets: rows of example i are offsets[i]:offsets[i+1]."""
    flat = [t for ts in targets for t in ts]
    owner = torch.tensor([i for i, ts in enumerate(targets) for _ in ts], dtype=torch.long)
    ids = torch.full((len(flat), max_length), vocab.PAD, dtype=torch.long)
    for row, text in enumerate(flat):
        enc = vocab.encode(text, max_length)
        ids[row, : len(enc)] = torch.tensor(enc)
    offsets = torch.zeros(len(targets) + 1, dtype=torch.long)
    offsets[1:] = torch.bincount(owner, minlength=len(targets)).cumsum(0)
    return ids, offsets


def teacher_forcing_batch(ids: torch.Tensor, offsets: torch.Tensor, index: torch.Tensor, per_example: Optional[int],
                          train_pass: int) -> dict[str, torch.Tensor]:
    """Decoder inputs, labels and each row's example for the examples ``index`` in training pass ``train_pass`` (from 1).

    An example contributes all its targets, or ``per_example`` of them, cycling with the pass.
    """
    rows, owner = [], []
    for position, i in enumerate(index.tolist()):
        start, end = int(offsets[i]), int(offsets[i + 1])
        count = end - start
        if per_example is None or per_example >= count:
            chosen = range(start, end)
        else:
            # pass p uses targets p*k .. p*k+k-1 (mod count): every target is seen within a few epochs
            first = max(train_pass - 1, 0) * per_example
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
    code_identity: ClassVar[dict[str, str]] = {"target_tokenization": TARGET_TOKENIZATION}

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
            self._target_ids[role] = encode_targets(self.vocab, targets, opts.max_target_length)

    def _sources(self, role: str) -> list[str]:
        """Source text of every example of a role ("" when the task reads only images)."""
        raise NotImplementedError

    def training_texts(self) -> list[str]:
        """Training source texts (the encoder's word-level vocabulary)."""
        return [t for t in self._sources("train") if t] or ["[CLS]"]

    def prepare(self, tokenizer: Any) -> None:
        """Tokenize the source side of every split (empty sources become a lone [CLS])."""
        self.tokenizer = tokenizer
        self._source = {}
        for role in self.split_names:
            self._source[role] = encode_texts(tokenizer, self._sources(role), self.options.max_text_length)

    def augment_inputs(self) -> AugmentInputs:
        """The source's rewrites, plus the decoder targets' (every target row of a flipped example)."""
        inputs = super().augment_inputs()
        for key in ("decoder_input_ids", "labels"):
            rewrite = vocabulary_rewrite(key, self.vocab.itos, self.label_rules.side_words, owner="target_owner")
            if rewrite is not None:
                inputs.rewrites.append(rewrite)
        return inputs

    def build_context_extras(self) -> dict[str, Any]:
        """The target vocabulary size (for model types that want it)."""
        return {"target_vocab_size": len(self.vocab) if self.vocab else 0}

    # --- models ------------------------------------------------------------------------------------
    def wrap(self, encoder: nn.Module) -> nn.Module:
        """Encoder + the task's text decoder (same decoder for every baseline); a text generator learns the targets itself."""
        from vlbench.tasks.generated import GeneratingModel, is_generator, require_prompt

        self._train_pass = 0  # a new model starts at the first targets again, whatever ran before it
        if is_generator(encoder):
            require_prompt(self)
            references = self._targets["train"]

            def texts(indices: list[int]) -> tuple[list[str], list[Optional[str]]]:
                # one target per example and pass, cycling through an example's references as the passes go
                chosen = [references[i][max(self._train_pass - 1, 0) % len(references[i])] for i in indices]
                return self.generator_prompts("train", indices), chosen

            return GeneratingModel(encoder, texts)
        spec = self.options.decoder
        hidden = spec.hidden_size or int(encoder.hidden_size)
        decoder = build_text_decoder(spec, hidden, len(self.vocab), self.options.max_target_length, self.vocab.PAD)
        return EncoderDecoder(encoder, decoder)

    def generator_prompts(self, split: str, indices: list[int]) -> list[str]:
        """The task's ``prompt.query`` filled with the fields (:meth:`prompt_fields`) of the examples at ``indices``."""
        from vlbench.models.prompted import fill
        from vlbench.tasks.generated import require_prompt

        template = require_prompt(self).query
        return [fill(template, self.prompt_fields(split, i), f"task {self.spec.name!r} prompt") for i in indices]

    def prompt_fields(self, split: str, index: int) -> dict[str, str]:
        """The values a prompt template may name for one example (none: the prompt is the same for every image)."""
        return {}

    def generation_budget(self, generator: Any) -> int:
        """New tokens a text generator may write per example."""
        return self.options.max_target_length

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token-level cross-entropy of the next target word (PAD ignored); a text generator's loss as it is."""
        if outputs.dim() == 0:  # a GeneratingModel's language-model loss
            return outputs
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
            ids, offsets = self._target_ids[split]
            batch.update(teacher_forcing_batch(ids, offsets, index, self.options.train_targets_per_example,
                                               self._train_pass))
        return batch

    # --- robustness suites (vlbench.robustness) -----------------------------------------------------------
    def input_texts(self, split: str) -> Optional[list[str]]:
        """The source texts of a role; None when the task reads images only (every source empty)."""
        sources = self._sources(split)
        return sources if any(sources) else None

    def replace_input_texts(self, split, texts, tokenizer):
        """Encode ``texts`` as the role's source texts; returns the undo."""
        source = self._source[split]
        self._source[split] = encode_texts(tokenizer, list(texts), self.options.max_text_length)

        def restore() -> None:
            self._source[split] = source

        return restore

    def attack_problem(self, model: nn.Module) -> Optional[str]:
        """None for the task's decoder (teacher-forced cross-entropy on the references); a text generator has none."""
        from vlbench.distributed import unwrap

        if not isinstance(unwrap(model), EncoderDecoder):
            return "the model writes its own text: no teacher-forced loss on the references to attack"
        return None

    def attack_loss(self, model, split, batch):
        """Teacher-forced cross-entropy of every reference of the batch's examples (the training loss)."""
        ids, offsets = self._target_ids[split]
        targets = teacher_forcing_batch(ids, offsets, batch["index"].cpu(), None, 1)
        batch = {**batch, **{k: v.to(batch["index"].device) for k, v in targets.items()}}
        return self.loss(model(batch), batch)

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
        """Generate (greedy for validation unless configured, beam search on test) and score.

        A text generator writes greedily on every split, after the task's prompt; its first line is scored.
        """
        from vlbench.distributed import unwrap
        from vlbench.tasks.generated import GeneratingModel

        if isinstance(unwrap(model), GeneratingModel):
            return self._evaluate_generator(model, split, batch_size, modalities, device)
        beam = self.options.validation_beam_size if split == "validation" else self.options.beam_size
        hypotheses = self.predict(model, split, batch_size, modalities, device, beam_size=beam)
        from vlbench.distributed import on_main

        result = on_main(lambda: self.score(split, hypotheses))  # one scorer (one METEOR JVM) per run
        result.details.setdefault("decoding", {"beam_size": beam, "length_penalty": self.options.length_penalty,
                                               "max_length": self.options.max_target_length - 1})
        result.details.setdefault("target_vocabulary", self.vocab.describe())
        return result

    def _evaluate_generator(self, model, split, batch_size, modalities, device) -> EvalResult:
        from vlbench.distributed import on_main, unwrap
        from vlbench.models.prompted import extract_answer
        from vlbench.tasks.generated import generate_split

        budget = self.generation_budget(unwrap(model).encoder)
        texts = generate_split(self, model, split, batch_size, modalities, device,
                               lambda idx: self.generator_prompts(split, idx), budget)
        result = on_main(lambda: self.score(split, [extract_answer(t) for t in texts]))
        result.details.setdefault("decoding", {"beam_size": 1, "max_length": budget,
                                               "by": "the model's own greedy generation"})
        return result
