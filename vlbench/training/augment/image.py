"""Image augmentations on batched tensors, one random draw per image: flip, resized crop, rotation, colour jitter.

They work on the model's own ``pixel_values`` (after its transform), brought to the 0-1 scale with the
transform's normalisation (``unit = pixels * std + mean``) and back, so one implementation serves every
transform (normalised floats, or the uint8 crops that a pretrained image part finishes itself). Crop and
rotation are one affine resampling per image (``affine_grid`` / ``grid_sample``, bilinear, black outside
the image); the flip is an exact mirror. A ``pixel_mask`` (padded images) is moved with the pixels.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.nn import functional as F

from vlbench.specs.robustness import ColorJitter, CropAugment

__all__ = ["Normalisation", "to_unit", "from_unit", "flip_images", "affine_matrices", "warp_images", "jitter_colours"]

Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) of unit = x * std + mean

# ITU-R BT.601 luma (torchvision's rgb_to_grayscale) and the YIQ basis whose chroma plane a hue shift rotates
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _channels(values: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def to_unit(pixels: torch.Tensor, normalisation: Normalisation) -> torch.Tensor:
    """The model's pixels (B, 3, H, W) on the 0-1 scale, in float32."""
    mean, std = normalisation
    return pixels.float() * _channels(std, pixels) + _channels(mean, pixels)


def from_unit(unit: torch.Tensor, normalisation: Normalisation, dtype: torch.dtype) -> torch.Tensor:
    """Back to the model's scale and dtype (integer pixels rounded, as an 8-bit image would be)."""
    mean, std = normalisation
    values = (unit.clamp(0.0, 1.0) - _channels(mean, unit)) / _channels(std, unit)
    return values.round().to(dtype) if not dtype.is_floating_point else values.to(dtype)


def flip_images(images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mirror the images (B, ..., W) whose ``chosen`` (B,) is true, left to right."""
    shape = (-1,) + (1,) * (images.dim() - 1)
    return torch.where(chosen.view(shape), images.flip(-1), images)


def affine_matrices(n: int, height: int, width: int, crop: Optional[CropAugment], rotation: float,
                    generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) maps from output to input coordinates (``affine_grid``'s convention), one draw per image.

    A crop of area fraction s (drawn from ``crop.scale``) and aspect ratio r (log-uniform in ``crop.ratio``)
    covers sqrt(s*r) of the width and sqrt(s/r) of the height, at a uniform position inside the image; the
    rotation turns the sampled square about its centre by an angle drawn from [-rotation, rotation] degrees,
    in pixel space (so a non-square image is not sheared).
    """
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if crop is not None:
        u = torch.rand(n, 4, generator=generator)
        area = crop.scale[0] + (crop.scale[1] - crop.scale[0]) * u[:, 0]
        log_low, log_high = math.log(crop.ratio[0]), math.log(crop.ratio[1])
        ratio = torch.exp(log_low + (log_high - log_low) * u[:, 1])
        cropped = u[:, 3] < crop.p
        w = torch.where(cropped, (area * ratio).sqrt().clamp(max=1.0), torch.ones(n))
        h = torch.where(cropped, (area / ratio).sqrt().clamp(max=1.0), torch.ones(n))
        cx = (1 - w) * (2 * torch.rand(n, generator=generator) - 1)
        cy = (1 - h) * (2 * u[:, 2] - 1)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
    if rotation:
        angle = torch.deg2rad(rotation * (2 * torch.rand(n, generator=generator) - 1))
        cos, sin = angle.cos(), angle.sin()
        turn = torch.stack([torch.stack([cos, -sin * height / width], -1),
                            torch.stack([sin * width / height, cos], -1)], 1)  # R in normalised coordinates
        theta[:, :, :2] = theta[:, :, :2] @ turn
    return theta


def warp_images(images: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample float images (B, C, H, W) through ``theta`` (zero outside the image)."""
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _factors(n: int, amount: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    draw = 1 + amount * (2 * torch.rand(n, generator=generator) - 1)
    return draw.clamp_min(0.0).to(device).view(n, 1, 1, 1)


def _grey(unit: torch.Tensor) -> torch.Tensor:
    return (unit * _channels(_LUMA, unit)).sum(1, keepdim=True)


def _shift_hue(unit: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma (the I-Q plane of YIQ) by ``turns`` (B,) of a full circle."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, device=unit.device)
    angle = 2 * math.pi * turns.to(unit.device)
    cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    rotate = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                          torch.stack([zero, sin, cos], -1)], 1)  # (B, 3, 3)
    matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, unit)


def jitter_colours(unit: torch.Tensor, jitter: ColorJitter, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, then hue, each factor drawn per image (0-1 images in, 0-1 out)."""
    n, device = unit.shape[0], unit.device
    chosen = (torch.rand(n, generator=generator) < jitter.p).to(device).view(n, 1, 1, 1)
    out = unit
    if jitter.brightness:
        out = (out * _factors(n, jitter.brightness, generator, device)).clamp(0, 1)
    if jitter.contrast:
        mean = _grey(out).mean((1, 2, 3), keepdim=True)
        out = (mean + _factors(n, jitter.contrast, generator, device) * (out - mean)).clamp(0, 1)
    if jitter.saturation:
        grey = _grey(out)
        out = (grey + _factors(n, jitter.saturation, generator, device) * (out - grey)).clamp(0, 1)
    if jitter.hue:
        out = _shift_hue(out, jitter.hue * (2 * torch.rand(n, generator=generator) - 1)).clamp(0, 1)
    return torch.where(chosen, out, unit)
