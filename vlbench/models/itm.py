"""Align-then-fuse (ALBEF-style) model: a dual encoder plus a fusion transformer for image-text matching.

The two towers of :class:`~vlbench.models.dual_encoder.DualEncoder` embed images and texts separately
(contrastive scoring: N + M tower passes and a dot product per pair). A small fusion transformer
then reads one text's token states while attending to one image's patch states (ALBEF's fusion layers:
self-attention over the text, cross-attention to the image, feed-forward; ``torch.nn.TransformerDecoder``
without a causal mask), and its fused [CLS] state feeds an image-text matching head (cross-encoder
scoring: one fusion pass per pair). Because the towers run once per image
and per text, scoring N x M pairs costs N x M fusion passes only, and the towers' contrastive
similarities supply hard negatives for training and the candidate lists of two-stage retrieval.

``scoring`` and ``top_k`` say how a retrieval task ranks with this model: ``cross`` scores every pair,
``two-stage`` re-ranks each query's contrastive top-k with the cross-encoder, ``dual`` uses the towers only.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.models.base import BuildContext, EncoderOutput
from vlbench.models.dual_encoder import DualEncoder, DualEncoderConfig, bert_tower, check_not_pretrained, vit_tower

__all__ = ["AlignFuseConfig", "AlignFuseEncoder"]


class AlignFuseConfig(DualEncoderConfig):
    """Dual-encoder towers, fusion depth, and how retrieval scores with the model."""

    fusion_layers: int = Field(1, ge=1, description="fusion layers: text self-attention + cross-attention to the image")
    scoring: Literal["cross", "two-stage", "dual"] = Field("two-stage", description="retrieval scoring")
    top_k: int = Field(16, ge=1, description="two-stage: candidates per query re-ranked by the cross-encoder")


class AlignFuseEncoder(DualEncoder):
    """Towers of a dual encoder and a fusion transformer; ``fuse`` scores image-text pairs jointly."""

    Config = AlignFuseConfig
    modalities = ("text", "image")

    def __init__(self, config: AlignFuseConfig, text_tower: nn.Module, image_tower: nn.Module, fusion: nn.Module) -> None:
        super().__init__(config, text_tower, image_tower)
        self.fusion = fusion
        self.scoring = config.scoring
        self.top_k = config.top_k

    @classmethod
    def from_spec(cls, config: AlignFuseConfig, pretrained: Optional[str], context: BuildContext) -> "AlignFuseEncoder":
        """Towers and fusion layers from config."""
        check_not_pretrained("dual-itm", pretrained, config)
        layer = nn.TransformerDecoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_heads,
            dim_feedforward=config.intermediate_size,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
        )
        fusion = nn.TransformerDecoder(layer, num_layers=config.fusion_layers)
        return cls(config, bert_tower(config, context), vit_tower(config, context), fusion)

    def fuse(self, image: EncoderOutput, text: EncoderOutput) -> torch.Tensor:
        """Joint features (P, H) of P aligned (image, text) pairs from their tower outputs: the mean fused text state."""
        fused = self.fusion(
            text.sequence,
            image.sequence,
            tgt_key_padding_mask=text.mask == 0,
            memory_key_padding_mask=image.mask == 0,
        )
        # every text token has checked its own words against the image; their mean is the verdict's input
        weights = text.mask.to(fused.dtype).unsqueeze(-1)
        return (fused * weights).sum(1) / weights.sum(1).clamp_min(1.0)
