"""Image-only baseline: the visual stream alone (no question) with the task head on top.

It answers "how much does the text add": on VQA it can only learn answers that the image predicts
whatever the question, so it lands near the image-conditioned prior. Its visual stream is exactly the
one the co-attention model uses, so the two differ only by the text stream and the co-attention layers.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.data.images import ImageTransform
from vlbench.errors import SpecError
from vlbench.models._blocks import VisualSettings, VisualStream
from vlbench.models._torchvision import ImageNetResize
from vlbench.models.base import BuildContext, Encoder, EncoderOutput
from vlbench.models.parts.settings import build_image_part

__all__ = ["ImageOnlyConfig", "ImageOnlyEncoder"]


class ImageOnlyConfig(VisualSettings):
    """Size of the visual stream (built from config; ``pretrained`` is not supported)."""

    num_layers: int = Field(2, ge=0, description="self-attention layers over the image regions")
    scratch: bool = Field(False, description="random weights for the image part (same architecture and "
                          "preprocessing): the from-scratch twin of a model over a pretrained image part")


class ImageOnlyEncoder(Encoder):
    """Pooled output = tanh(Linear(mean of the region features))."""

    Config = ImageOnlyConfig
    modalities = ("image",)

    def __init__(self, config: ImageOnlyConfig, image_size: int, part: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.visual = VisualStream(config, config.num_layers, image_size, part)
        self.part = part
        self.pooler = nn.ModuleDict({"dense": nn.Linear(config.hidden_size, config.hidden_size)})
        self.hidden_size = config.hidden_size
        self.image_size = image_size
        self.imagenet_backbone = config.backbone not in ("resnet", "patch")

    @classmethod
    def from_spec(cls, config: ImageOnlyConfig, pretrained: Optional[str], context: BuildContext) -> "ImageOnlyEncoder":
        """Built from config; the small ResNet has no offline pretrained weights."""
        if pretrained:
            raise SpecError("image-only: `pretrained:` is not supported (the visual stream is built from config).")
        if config.scratch and config.image_part is None:
            raise SpecError("image-only: scratch: true draws an image part's weights at random; set image_part too.")
        part = None
        if config.image_part is not None:
            part = build_image_part(config.image_part, scratch=config.scratch, visual_tokens=config.grid_size ** 2,
                                    cache_dir=context.cache_dir)
        return cls(config, context.image_size, part)

    def image_transform(self) -> Optional[ImageTransform]:
        """An image part's own preprocessing; ImageNet-normalised images for a torchvision ResNet; else the default."""
        if self.part is not None:
            return self.part.model_transform()
        return ImageNetResize(self.image_size) if self.imagenet_backbone else None

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The visual stream's projected region features (before boxes)."""
        return {"image": self.visual.feature}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Encode the image; the question in the batch is never read."""
        regions = self.visual(batch["pixel_values"])
        pooled = torch.tanh(self.pooler["dense"](regions.mean(1)))
        mask = torch.ones(regions.shape[:2], dtype=torch.long, device=regions.device)
        return EncoderOutput(pooled=pooled, sequence=regions, mask=mask)
