"""The preprocessing that belongs to a set of pretrained weights (timm's ``pretrained_cfg``), as a transform.

A pretrained image encoder sees images the way it was trained: a centre crop of the shorter side, a
resize with the training's interpolation, and the training's mean and standard deviation. A transform
that differs from the weights' costs accuracy silently, so the description travels with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["ImagePreprocessing", "PretrainedImageTransform", "CroppedPixels"]

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class ImagePreprocessing:
    """What a set of weights was trained to see: mean and std on the 0-1 scale, size, interpolation, crop.

    ``crop_pct`` follows TF/timm evaluation: the centre square of side ``crop_pct`` x the shorter side
    (TF's rounding) is resized to ``size``; 1.0 keeps the whole shorter side.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int
    interpolation: str
    crop_pct: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, not {self.interpolation!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], not {self.crop_pct!r}")

    def with_crop(self, crop_pct: float) -> "ImagePreprocessing":
        """The same preprocessing with another centre crop (e.g. 1.0: the whole frame)."""
        return replace(self, crop_pct=float(crop_pct))

    def crop_side(self, height: int, width: int) -> int:
        """Side of the centre square cropped from an image, as TF's EfficientNet evaluation computes it."""
        padding = round(self.size * (1.0 / self.crop_pct - 1.0))
        return max(1, int(self.size / (self.size + padding) * min(height, width)))


class PretrainedImageTransform:
    """Decoded uint8 images -> ``pixel_values`` (B, 3, size, size) exactly as :class:`ImagePreprocessing` says."""

    def __init__(self, preprocessing: ImagePreprocessing) -> None:
        self.preprocessing = preprocessing
        self.size = preprocessing.size

    def crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, side, side) uint8: the centre square (TF's rounding), no resize yet."""
        height, width = pixels.shape[1:3]
        side = self.preprocessing.crop_side(height, width)
        top, left = (height - side + 1) // 2, (width - side + 1) // 2
        return pixels[:, top:top + side, left:left + side].permute(0, 3, 1, 2)

    def finish(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, side, side) centre crops on the 0-255 scale -> normalised (B, 3, size, size) float ``pixel_values``."""
        p = self.preprocessing
        values = self.resize(crops.float())
        mean = torch.tensor(p.mean, dtype=values.dtype, device=values.device).view(1, 3, 1, 1)
        std = torch.tensor(p.std, dtype=values.dtype, device=values.device).view(1, 3, 1, 1)
        return (values / 255.0 - mean) / std

    def resize(self, values: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float on the 0-255 scale -> (B, 3, size, size) with the weights' interpolation."""
        p = self.preprocessing
        if values.shape[-1] == p.size and values.shape[-2] == p.size:
            return values
        smooth = p.interpolation != "nearest"
        values = F.interpolate(values, size=(p.size, p.size), mode=p.interpolation,
                               align_corners=False if smooth else None, antialias=smooth)
        # bicubic overshoots; the weights saw 8-bit images (PIL's resize keeps them in 0..255)
        return values.clamp_(0.0, 255.0)

    def from_uint8(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, H, W, 3) uint8 tensor of equal-size images -> model inputs."""
        return {"pixel_values": self.finish(self.crop(pixels))}

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Images of any sizes -> (B, 3, size, size); equal-size batches go through in one call."""
        arrays = [np.asarray(img, dtype=np.uint8) for img in images]
        if arrays and all(a.shape == arrays[0].shape for a in arrays):
            return self.from_uint8(torch.from_numpy(np.stack(arrays)))
        outs = [self.from_uint8(torch.tensor(a).unsqueeze(0))["pixel_values"] for a in arrays]
        return {"pixel_values": torch.cat(outs, 0)}

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The weights' (mean, std): the 0-1 image is ``pixel_values * std + mean``."""
        return tuple(self.preprocessing.mean), tuple(self.preprocessing.std)

    def signature(self) -> str:
        """e.g. ``pretrained-224-bicubic-crop0.875-mean[0.498,0.498,0.498]-std[0.502,0.502,0.502]``."""
        p = self.preprocessing
        fmt = lambda xs: ",".join(f"{x:.6g}" for x in xs)  # noqa: E731
        return f"pretrained-{p.size}-{p.interpolation}-crop{p.crop_pct:g}-mean[{fmt(p.mean)}]-std[{fmt(p.std)}]"


class CroppedPixels:
    """The host half of a :class:`PretrainedImageTransform`: uint8 centre crops; the part finishes them.

    A frozen part computes each image's features once, so resizing every batch to the weights' size on
    the host would be wasted work (and 224-px float batches are ~50x larger than 64-px uint8 crops to
    collate, hash and keep on a device). Batches therefore carry the centre crops as uint8 (B, 3, side,
    side), and the part runs :meth:`PretrainedImageTransform.finish` only on images it computes. Equal-size
    images give exactly the full transform's tensors; a batch of mixed sizes is resized here and rounded
    to 8-bit pixels (as PIL's resize does) so that it stacks.
    """

    def __init__(self, preprocessing: ImagePreprocessing) -> None:
        self.full = PretrainedImageTransform(preprocessing)
        self.size = preprocessing.size

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Images of any sizes -> uint8 ``pixel_values`` (B, 3, side, side)."""
        arrays = [np.asarray(img, dtype=np.uint8) for img in images]
        if arrays and all(a.shape == arrays[0].shape for a in arrays):
            return {"pixel_values": self.full.crop(torch.from_numpy(np.stack(arrays))).contiguous()}
        crops = []
        for a in arrays:
            crop = self.full.resize(self.full.crop(torch.from_numpy(a).unsqueeze(0)).float())
            crops.append(crop.round_().to(torch.uint8))
        return {"pixel_values": torch.cat(crops, 0)}

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """uint8 crops on the 0-255 scale: the 0-1 image is ``pixel_values / 255``."""
        return (0.0,) * 3, (1 / 255,) * 3

    def signature(self) -> str:
        """The full transform's signature, marked as finished on the model."""
        return self.full.signature() + "-on-model"
