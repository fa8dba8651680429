"""Text-only baseline: a BERT encoder over the question (transformers ``BertModel``)."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field

from vlbench.errors import SpecError
from vlbench.models._blocks import masked_mean
from vlbench.models.base import (
    BuildContext,
    Encoder,
    EncoderConfig,
    EncoderOutput,
    bert_from_config,
    load_pretrained_text,
)

__all__ = ["TextBertConfig", "TextBertEncoder"]


class TextBertConfig(EncoderConfig):
    """Size of a BERT built from config (ignored, except dropout and ``scratch``, when ``pretrained`` is set)."""

    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)
    scratch: bool = Field(False, description="with `pretrained:`, its architecture and tokenizer with random "
                          "weights: the from-scratch twin")
    pooling: Literal["pooler", "mean"] = Field(
        "pooler", description="pooled output: the BERT's pooler (dense + tanh) over [CLS], or the mean of the "
        "token states, which is what sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained with "
        "(their pooler weights are untrained; `mean` drops the pooler)")


class TextBertEncoder(Encoder):
    """Encodes the text with BertModel; pooled output = BERT's pooler over [CLS], or the mean of its token states."""

    Config = TextBertConfig
    modalities = ("text",)

    def __init__(self, bert: torch.nn.Module, pooling: str = "pooler") -> None:
        super().__init__()
        if pooling == "mean":
            bert.pooler = None  # unused weights would count as trainable
        self.bert = bert
        self.pooling = pooling
        self.hidden_size = bert.config.hidden_size

    @classmethod
    def from_spec(cls, config: TextBertConfig, pretrained: Optional[str], context: BuildContext) -> "TextBertEncoder":
        """A BertModel from a hub id / local directory, or from config sized by the spec."""
        from transformers import BertModel

        if config.scratch and not pretrained:
            raise SpecError("bert-text: scratch: true takes the architecture of `pretrained:`; set pretrained too "
                            "(without it the BERT is built from config, at random, anyway).")
        if pretrained:
            bert = load_pretrained_text(BertModel, pretrained, context, "bert-text", scratch=config.scratch,
                                        dropout=config.dropout, attention_dropout=config.attention_dropout)
        else:
            bert = bert_from_config(
                context, hidden_size=config.hidden_size, num_layers=config.num_layers, num_heads=config.num_heads,
                intermediate_size=config.intermediate_size, dropout=config.dropout,
                attention_dropout=config.attention_dropout, pooling=True,
            )
        return cls(bert, config.pooling)

    def embedding_modules(self) -> dict[str, torch.nn.Module]:
        """The word embeddings."""
        return {"text": self.bert.get_input_embeddings()}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Pool the question through BERT; images in the batch are never read."""
        out = self.bert(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
        )
        mask = batch["attention_mask"]
        pooled = out.pooler_output if self.pooling == "pooler" else masked_mean(out.last_hidden_state, mask)
        return EncoderOutput(pooled=pooled, sequence=out.last_hidden_state, mask=mask)
