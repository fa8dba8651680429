"""The blind counterpart of an image encoder: it reads nothing and returns learned constants.

With a task's decoder on top (captioning) it is a pure language model of the targets, the floor that
tells how much of a captioner's score comes from the image. ``modalities`` is empty, so batches built
for it carry no pixels (and its output never depends on the batch's content, only on its size).
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput

__all__ = ["BlindConfig", "BlindEncoder"]


class BlindConfig(EncoderConfig):
    """Width and number of the learned memory vectors."""

    hidden_size: int = Field(128, ge=8)
    memory_tokens: int = Field(1, ge=1)


class BlindEncoder(Encoder):
    """Learned constant memory (B, memory_tokens, H), identical for every example."""

    Config = BlindConfig
    modalities: tuple[str, ...] = ()

    def __init__(self, hidden_size: int, memory_tokens: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.memory = nn.Parameter(torch.randn(memory_tokens, hidden_size) * 0.02)

    @classmethod
    def from_spec(cls, config: BlindConfig, pretrained: Optional[str], context: BuildContext) -> "BlindEncoder":
        """Built from config; ``pretrained`` has no meaning here and is refused."""
        if pretrained:
            from vlbench.errors import SpecError

            raise SpecError("model type 'blind' has no weights to load; remove 'pretrained' from the baseline.")
        return cls(config.hidden_size, config.memory_tokens)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """The same memory for every example (only the batch size is read)."""
        n = int(batch["index"].shape[0])
        memory = self.memory.unsqueeze(0).expand(n, -1, -1)
        mask = torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        return EncoderOutput(pooled=memory[:, 0], sequence=memory, mask=mask)
