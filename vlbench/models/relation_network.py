"""Relation network (Santoro et al., NeurIPS 2017): a question-conditioned MLP over every pair of grid cells.

A small CNN turns the image into a grid; each cell, tagged with its (x, y) coordinates in [-1, 1], is an
"object". For every ordered pair of objects, g([o_i, o_j, q]) (an MLP) sees both objects and the question
state; the pair outputs are summed (averaged: the pair count is fixed) and f (an MLP) maps the sum to the pooled feature task heads read.
Built for relational questions ("is the red circle to the left of the blue square?"): comparing two
positions is one layer of g, not something attention must discover.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput
from vlbench.models.film import FilmEncoder, conv_stem

__all__ = ["RelationNetworkConfig", "RelationNetworkEncoder", "cell_coordinates"]


class RelationNetworkConfig(EncoderConfig):
    """Sizes of a relation network built from config (no pretrained weights)."""

    hidden_size: int = Field(128, ge=8, description="width of g, f and the pooled output")
    stem_channels: list[int] = Field(default_factory=lambda: [32, 64, 64, 64], min_length=1,
                                     description="one stride-2 3x3 conv (+BatchNorm, ReLU) per entry")
    g_layers: int = Field(3, ge=1, description="layers of the pair MLP g")
    f_layers: int = Field(2, ge=1, description="layers of the output MLP f")
    embedding_size: int = Field(64, ge=8)
    question_size: int = Field(128, ge=8, description="GRU state size")
    dropout: float = Field(0.0, ge=0, lt=1)


def cell_coordinates(side: int) -> torch.Tensor:
    """(side*side, 2) cell centres (x, y) in [-1, 1], row-major like a flattened feature map."""
    axis = torch.linspace(-1.0, 1.0, side)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


def _mlp(inputs: int, width: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU(inplace=True)]
        if dropout and i == layers - 1:
            modules.append(nn.Dropout(dropout))
    return nn.Sequential(*modules)


class RelationNetworkEncoder(Encoder):
    """Pooled output = f(sum over ordered cell pairs of g([o_i, o_j, q]))."""

    Config = RelationNetworkConfig
    modalities = ("text", "image")

    def __init__(self, config: RelationNetworkConfig, vocab_size: int, pad_token_id: int, image_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_token_id)
        self.question = nn.GRU(config.embedding_size, config.question_size, batch_first=True)
        self.stem, width, self.side = conv_stem(config.stem_channels, image_size)
        self.register_buffer("coords", cell_coordinates(self.side), persistent=False)
        object_size = width + 2
        self.g = _mlp(2 * object_size + config.question_size, config.hidden_size, config.g_layers)
        self.f = _mlp(config.hidden_size, config.hidden_size, config.f_layers, config.dropout)
        self.hidden_size = config.hidden_size

    @classmethod
    def from_spec(cls, config: RelationNetworkConfig, pretrained: Optional[str],
                  context: BuildContext) -> "RelationNetworkEncoder":
        """Built from config; trained from scratch."""
        if pretrained:
            raise SpecError("relation-network: `pretrained:` is not supported (it is trained from scratch).")
        if context.tokenizer is None:
            raise SpecError("relation-network: reads the question, but the task gave no tokenizer.")
        return cls(config, len(context.tokenizer), int(context.tokenizer.pad_token_id or 0), context.image_size)

    encode_question = FilmEncoder.encode_question

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The question's word embeddings and the CNN stem's grid of image features (the objects)."""
        return {"text": self.embedding, "image": self.stem}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Objects from the grid, g over all ordered pairs with the question, sum, f."""
        question = self.encode_question(batch["input_ids"], batch["attention_mask"])
        grid = self.stem(batch["pixel_values"]).flatten(2).transpose(1, 2)  # (B, N, C)
        count = grid.shape[1]
        if count != self.side * self.side:
            raise SpecError(f"relation-network: built for a {self.side}x{self.side} grid, got {count} cells.")
        objects = torch.cat([grid, self.coords.to(grid.dtype).expand(grid.shape[0], -1, -1)], dim=-1)
        left = objects[:, :, None, :].expand(-1, -1, count, -1)
        right = objects[:, None, :, :].expand(-1, count, -1, -1)
        q = question[:, None, None, :].expand(-1, count, count, -1)
        pairs = self.g(torch.cat([left, right, q], dim=-1))  # (B, N, N, H)
        # the mean is the paper's sum divided by the fixed pair count: the same function, better scaled at init
        relations = pairs.mean(dim=(1, 2))
        pooled = self.f(relations)
        mask = torch.ones(objects.shape[:2], dtype=torch.long, device=objects.device)
        return EncoderOutput(pooled=pooled, sequence=None, mask=mask)
