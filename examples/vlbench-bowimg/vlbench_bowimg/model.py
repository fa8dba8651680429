"""BOWIMG (Zhou et al. 2015): a bag-of-words question vector concatenated with CNN image features.

Self-contained on purpose: ``vlbench run --plugin path/to/model.py`` imports this file alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput
from vlbench.registry import register_model
from vlbench.specs import add_spec_dir

__all__ = ["BowImgConfig", "BowImgEncoder"]

add_spec_dir("baselines", Path(__file__).resolve().parent / "baselines")


class BowImgConfig(EncoderConfig):
    """Sizes of the word embeddings, the CNN and the fused feature."""

    hidden_size: int = Field(128, ge=8)
    embedding_size: int = Field(64, ge=4)
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)


@register_model("bowimg", description="bag-of-words question + small-CNN image features, concatenated (BOWIMG, Zhou et al. 2015)")
class BowImgEncoder(Encoder):
    """Mean of the question's word embeddings ++ globally pooled CNN features -> Linear -> tanh."""

    Config = BowImgConfig
    modalities = ("text", "image")

    def __init__(self, config: BowImgConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        layers: list[nn.Module] = []
        width = 3
        for out in config.channels:
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            width = out
        self.cnn = nn.Sequential(*layers)
        self.fuse = nn.Linear(config.embedding_size + width, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.hidden_size = config.hidden_size

    @classmethod
    def from_spec(cls, config: BowImgConfig, pretrained: Optional[str], context: BuildContext) -> "BowImgEncoder":
        """Built from config, with the comparison's tokenizer sizing the word embeddings."""
        if pretrained:
            from vlbench.errors import SpecError

            raise SpecError("bowimg: `pretrained:` is not supported.")
        return cls(config, len(context.tokenizer), context.tokenizer.pad_token_id or 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Bag of words (padding ignored) and image features, fused."""
        mask = batch["attention_mask"].unsqueeze(-1).float()
        bow = (self.words(batch["input_ids"]) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        image = self.cnn(batch["pixel_values"]).mean(dim=(2, 3))
        pooled = torch.tanh(self.fuse(self.dropout(torch.cat([bow, image], dim=-1))))
        return EncoderOutput(pooled=pooled)
