"""Image only, through a pretrained image-encoder part: its pooled vector (never the question) under the task head.

With the ImageNet EfficientNet-Lite0 this is what the weights alone know about the images: the pooled
1280-d vector is exactly what the ImageNet classifier reads. Frozen with cached features (``peft:
{method: frozen}``) only the task head trains. ``scratch: true`` gives the same architecture with random
weights.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput
from vlbench.models.parts.image_transform import CroppedPixels
from vlbench.models.parts.settings import ImagePartSettings, build_image_part

__all__ = ["ImagePartConfig", "ImagePartEncoder"]


class ImagePartConfig(EncoderConfig):
    """The image part and the from-scratch switch."""

    image_part: ImagePartSettings = Field(default_factory=ImagePartSettings)
    scratch: bool = Field(False, description="random weights for the image part (same architecture): the from-scratch twin")


class ImagePartEncoder(Encoder):
    """Pooled output = the part's pooled vector (the mean of its cells)."""

    Config = ImagePartConfig
    modalities = ("image",)

    def __init__(self, image: torch.nn.Module) -> None:
        super().__init__()
        self.image = image
        self.hidden_size = image.hidden_size

    @classmethod
    def from_spec(cls, config: ImagePartConfig, pretrained: Optional[str], context: BuildContext) -> "ImagePartEncoder":
        """The part named by ``image_part:``; ``pretrained:`` names text weights, which this model does not read."""
        if pretrained:
            raise SpecError("image-part: `pretrained:` names text weights; the image part's weights come from "
                            "config.image_part (set pretrained: null).")
        return cls(build_image_part(config.image_part, scratch=config.scratch, cache_dir=context.cache_dir))

    def image_transform(self) -> CroppedPixels:
        """The image part's preprocessing, finished inside the part."""
        return self.image.model_transform()

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """The part's pooled vector and its cells; the question in the batch is never read."""
        out = self.image(batch["pixel_values"])
        return EncoderOutput(pooled=out.pooled, sequence=out.sequence)
