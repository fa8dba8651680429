"""A text decoder with cross-attention over any encoder's features, for captioning and translation.

The decoder is transformers' ``BertLMHeadModel`` configured as a decoder (causal self-attention plus
cross-attention), i.e. the BERT2BERT / VisionEncoderDecoder decoder. ``EncoderDecoder`` puts it on a
registered :class:`~vlbench.models.base.Encoder`: the encoder's ``sequence`` output (token and/or patch
features with their mask; the pooled vector when a model has no sequence) is the memory the decoder
attends to. Task types build it in ``wrap()``, so every baseline of a task gets the same decoder and
differs only in what its encoder reads (nothing, the text, or the text and the image).

Decoding is incremental: :meth:`EncoderDecoder.start` returns a :class:`DecoderState` holding the
memory and transformers' key/value cache, and :meth:`EncoderDecoder.step` feeds one token per sequence.
``vlbench.tasks.generation`` runs greedy and beam search on top of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch import nn
from torch.nn import functional as F

from vlbench.models.base import heads_problem
from vlbench.specs.schema import SettingsModel

__all__ = ["DecoderSpec", "DecoderState", "EncoderDecoder", "build_text_decoder"]


class DecoderSpec(SettingsModel):
    """Size of the task's decoder (task options ``decoder:``); hidden size follows the encoder unless set."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: Optional[int] = Field(None, ge=8, description="default: the encoder's hidden size")
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)
    tie_embeddings: bool = True

    @field_validator("num_heads")
    @classmethod
    def _heads_divide_width(cls, value: int, info: ValidationInfo) -> int:
        problem = heads_problem(info.data.get("hidden_size"), value)
        if problem:
            raise ValueError(problem)
        return value

    def encoder_problem(self, encoder_width: Any) -> Optional[str]:
        """Why the decoder cannot follow an encoder of ``encoder_width`` when its own hidden_size is unset."""
        if self.hidden_size is None and heads_problem(encoder_width, self.num_heads):
            return (f"the decoder takes the encoder's hidden_size {encoder_width}, which its num_heads {self.num_heads} "
                    "do not divide; set task.options.decoder.num_heads or task.options.decoder.hidden_size")
        return None


def build_text_decoder(spec: DecoderSpec, hidden_size: int, vocab_size: int, max_length: int, pad_id: int) -> nn.Module:
    """A ``BertLMHeadModel`` decoder (causal self-attention + cross-attention) built from config."""
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.attention_dropout,
        max_position_embeddings=max(max_length, 8),
        pad_token_id=pad_id,
        is_decoder=True,
        add_cross_attention=True,
        tie_word_embeddings=spec.tie_embeddings,
    )
    return BertLMHeadModel(config)


@dataclass
class DecoderState:
    """Incremental decoding state: encoder memory (N, S, H), its mask (N, S) and the key/value cache."""

    memory: torch.Tensor
    memory_mask: torch.Tensor
    cache: Any = None

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Keep / repeat / reorder rows (beam search), cache included."""
        if self.cache is not None:
            self.cache.reorder_cache(index)
        return DecoderState(self.memory.index_select(0, index), self.memory_mask.index_select(0, index), self.cache)


class EncoderDecoder(nn.Module):
    """A registered encoder, a projection of its features to the decoder width, and a text decoder."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        width = decoder.config.hidden_size
        enc_width = int(getattr(encoder, "hidden_size", width))
        self.bridge = nn.Identity() if enc_width == width else nn.Linear(enc_width, width)

    @property
    def vocab_size(self) -> int:
        """Size of the target vocabulary."""
        return int(self.decoder.config.vocab_size)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory (B, S, H) and mask (B, S) from the encoder's sequence output (pooled when it has none)."""
        out = self.encoder(batch)
        if out.sequence is not None:
            memory = out.sequence
            mask = out.mask if out.mask is not None else torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        else:
            memory = out.pooled.unsqueeze(1)
            mask = torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        return self.bridge(memory), mask.long()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits (T, L, V) for ``decoder_input_ids``; row t belongs to example ``target_owner[t]``."""
        memory, mask = self.encode(batch)
        owner = batch.get("target_owner")
        if owner is not None:
            memory, mask = memory.index_select(0, owner), mask.index_select(0, owner)
        out = self.decoder(
            input_ids=batch["decoder_input_ids"],
            attention_mask=batch["decoder_attention_mask"],
            encoder_hidden_states=memory,
            encoder_attention_mask=mask,
            use_cache=False,
        )
        return out.logits

    def start(self, batch: dict[str, torch.Tensor]) -> DecoderState:
        """Encode a batch once and return a fresh decoding state."""
        memory, mask = self.encode(batch)
        return DecoderState(memory, mask, None)

    def step(self, state: DecoderState, tokens: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """Log-probabilities (N, V) of the next token after feeding ``tokens`` (N, 1); updates the cache."""
        out = self.decoder(
            input_ids=tokens,
            encoder_hidden_states=state.memory,
            encoder_attention_mask=state.memory_mask,
            cache=state.cache,
            use_cache=True,
        )
        state.cache = out.cache
        return F.log_softmax(out.logits[:, -1].float(), dim=-1), state
