"""Early-fusion baseline: FiLM (Perez et al., AAAI 2018), the question modulating every visual feature map.

A GRU reads the question; its final state predicts a per-channel scale and shift (gamma, beta) for each
FiLM layer over a CNN's grid of image features, which carry a learned embedding of their grid cell so
that positions are explicit. The modulated grid is summed (a sum keeps counts) and, with the question
state, becomes the pooled feature that task heads read. Unlike ViLT and co-attention, which must first
learn *where* to attend, FiLM conditions every location multiplicatively from the first step; on
synthetic worlds such as CLEVR it is the classic strong joint model trained from scratch.

FiLM's residual blocks use a 1x1 and a 3x3 convolution on a 14x14 map; on a grid whose cells each hold
one object (the shapes world's 4x4), 1x1 convolutions (per-cell linear layers) suffice and cost less.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput

__all__ = ["FilmConfig", "FilmEncoder", "FilmLayer", "conv_stem"]


class FilmConfig(EncoderConfig):
    """Size of a FiLM model built from config (it has no pretrained weights)."""

    hidden_size: int = Field(128, ge=8, description="channels of the FiLM layers, GRU state and pooled output")
    stem_channels: list[int] = Field(default_factory=lambda: [32, 64, 128, 128], min_length=1,
                                     description="one stride-2 3x3 conv (+BatchNorm, ReLU) per entry")
    num_layers: int = Field(2, ge=1, description="FiLM layers (the first plain, the others residual)")
    embedding_size: int = Field(128, ge=8, description="question word embedding size")
    dropout: float = Field(0.0, ge=0, lt=1)



def conv_stem(channels: list[int], image_size: int) -> tuple[nn.Sequential, int, int]:
    """One stride-2 3x3 conv (+BatchNorm, ReLU) per entry: the stem, its output channels and grid side."""
    layers: list[nn.Module] = []
    width, side = 3, image_size
    for out in channels:
        layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        width, side = out, (side + 1) // 2
    return nn.Sequential(*layers), width, side

class FilmLayer(nn.Module):
    """relu(Linear(x) * (1 + gamma) + beta) per grid cell; gamma and beta come from the question."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """x (B, cells, C); gamma, beta (B, C)."""
        # (1 + gamma): at initialisation the modulation is near the identity, which trains stably from scratch
        return torch.relu(self.linear(x) * (1 + gamma[:, None]) + beta[:, None])


class FilmEncoder(Encoder):
    """Pooled output = MLP([sum over the grid of the FiLM-ed features, question state])."""

    Config = FilmConfig
    modalities = ("text", "image")

    def __init__(self, config: FilmConfig, vocab_size: int, pad_token_id: int, image_size: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_token_id)
        self.question = nn.GRU(config.embedding_size, hidden, batch_first=True)
        self.stem, width, side = conv_stem(config.stem_channels, image_size)
        self.cells = side * side
        self.position = nn.Parameter(torch.randn(self.cells, self.cells) * 0.1)  # a learned code per grid cell
        self.mix = nn.Linear(width + self.cells, hidden)
        self.film = nn.Linear(hidden, 2 * hidden * config.num_layers)
        self.layers = nn.ModuleList(FilmLayer(hidden) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.pool = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden))
        self.hidden_size = hidden

    @classmethod
    def from_spec(cls, config: FilmConfig, pretrained: Optional[str], context: BuildContext) -> "FilmEncoder":
        """Built from config; FiLM is trained from scratch."""
        if pretrained:
            raise SpecError("film: `pretrained:` is not supported (FiLM is trained from scratch).")
        if context.tokenizer is None:
            raise SpecError("film: reads the question, but the task gave no tokenizer.")
        return cls(config, len(context.tokenizer), int(context.tokenizer.pad_token_id or 0), context.image_size)

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The question's word embeddings and the CNN stem's grid of image features."""
        return {"text": self.embedding, "image": self.stem}

    def encode_question(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final GRU state after each question's last real token (padding never reaches it)."""
        lengths = attention_mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(self.embedding(input_ids), lengths, batch_first=True, enforce_sorted=False)
        _, state = self.question(packed)
        return state[-1]

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Condition the image's grid features on the question, then pool."""
        question = self.encode_question(batch["input_ids"], batch["attention_mask"])
        grid = self.stem(batch["pixel_values"]).flatten(2).transpose(1, 2)  # (B, cells, C)
        if grid.shape[1] != self.cells:
            raise SpecError(f"film: built for {self.cells} grid cells, got an image giving {grid.shape[1]}.")
        x = self.mix(torch.cat([grid, self.position.expand(grid.shape[0], -1, -1)], dim=-1))
        params = self.film(question).view(question.shape[0], len(self.layers), 2, -1)
        for i, layer in enumerate(self.layers):
            y = layer(x, params[:, i, 0], params[:, i, 1])
            x = y if i == 0 else x + y
        x = self.dropout(x)
        pooled = self.pool(torch.cat([x.sum(1), question], dim=-1))
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        return EncoderOutput(pooled=pooled, sequence=x, mask=mask)
