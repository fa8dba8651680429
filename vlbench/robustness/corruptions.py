"""Image corruptions in the manner of ImageNet-C (Hendrycks & Dietterich, ICLR 2019), five severities each.

Each corruption takes a decoded uint8 image (H, W, 3) and returns one of the same shape. The parameters
per severity are the authors' own tables (github.com/hendrycks/robustness, ImageNet-C/create_c): ImageNet-C's
for 224-pixel images (``make_imagenet_c.py``) and Tiny-ImageNet-C's for 64-pixel ones
(``make_tinyimagenet_c.py``). An image uses the table whose side is nearer to its shorter side (below
sqrt(64 x 224) ~ 120 pixels: the 64-pixel table), and the one parameter measured in pixels, the blur's
standard deviation, is scaled from that table's side to the image's. Gaussian noise
draws one standard normal field per (seed, image id) and scales it by the severity, so every baseline sees
the same corrupted pixels for a given seed and image, and a higher severity changes the image further.

Corruptions apply to the raw image, before the model's own transform (resize, crop, normalisation).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

__all__ = ["SEVERITIES", "REFERENCE_SIDES", "reference_side", "Corruption", "CORRUPTIONS", "corrupt", "severity_parameters",
           "CorruptedImageStore"]

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDES = (64, 224)  # Tiny-ImageNet-C's and ImageNet-C's image sides: one table of parameters each


def reference_side(side: int) -> int:
    """The table an image of shorter side ``side`` uses: the reference side nearest to it on a log scale."""
    return min(REFERENCE_SIDES, key=lambda ref: abs(np.log(max(int(side), 1) / ref)))


def _unit(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``std`` (0-1 pixel scale), clipped to the pixel range."""
    return _uint8(np.clip(_unit(image) + rng.standard_normal(image.shape) * std, 0.0, 1.0))


def gaussian_blur(image: np.ndarray, sigma: float, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels over height and width (edges: nearest pixel)."""
    from scipy.ndimage import gaussian_filter

    return _uint8(gaussian_filter(_unit(image), sigma=(sigma, sigma, 0), mode="nearest"))


def jpeg_compression(image: np.ndarray, quality: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """A real JPEG round trip through PIL at ``quality``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def brightness(image: np.ndarray, shift: float, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """ImageNet-C's brightness: ``shift`` added to the HSV value channel, hue and saturation kept.

    In HSV, RGB = V x (a function of H and S), so raising V alone scales the pixel's RGB by V'/V (a black
    pixel, whose hue and saturation are undefined, becomes grey V'); the same result as skimage's round trip.
    """
    unit = _unit(image)
    value = unit.max(axis=-1, keepdims=True)
    raised = np.clip(value + shift, 0.0, 1.0)
    scale = np.divide(raised, value, out=np.zeros_like(value), where=value > 0)
    return _uint8(np.where(value > 0, unit * scale, raised))


def contrast(image: np.ndarray, factor: float, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """ImageNet-C's contrast: each channel pulled towards its mean over the image by ``factor``."""
    unit = _unit(image)
    means = unit.mean(axis=(0, 1), keepdims=True)
    return _uint8(np.clip((unit - means) * factor + means, 0.0, 1.0))


@dataclass(frozen=True)
class Corruption:
    """One corruption: its function, its parameter, the authors' values per severity at 64 and 224 pixels."""

    apply: Callable[..., np.ndarray]
    parameter: str
    tiny_imagenet_c: tuple[float, ...]  # make_tinyimagenet_c.py, 64-pixel images
    imagenet_c: tuple[float, ...]  # make_imagenet_c.py, 224-pixel images
    in_pixels: bool = False  # measured in pixels: scaled from the table's side to the image's

    def value(self, severity: int, side: int) -> float:
        """The parameter at ``severity`` (1-5) for an image whose shorter side is ``side`` pixels."""
        reference = reference_side(side)
        base = (self.tiny_imagenet_c if reference == 64 else self.imagenet_c)[severity - 1]
        return base * side / reference if self.in_pixels else base


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption(gaussian_noise, "std (0-1 pixel scale)", (0.04, 0.08, 0.12, 0.15, 0.18),
                                 (0.08, 0.12, 0.18, 0.26, 0.38)),
    "gaussian_blur": Corruption(gaussian_blur, "sigma (pixels)", (0.5, 0.75, 1, 1.25, 1.5), (1, 2, 3, 4, 6),
                                in_pixels=True),
    "jpeg_compression": Corruption(jpeg_compression, "JPEG quality", (65, 58, 50, 40, 25), (25, 18, 15, 10, 7)),
    "brightness": Corruption(brightness, "HSV value shift", (0.1, 0.2, 0.3, 0.4, 0.5), (0.1, 0.2, 0.3, 0.4, 0.5)),
    "contrast": Corruption(contrast, "contrast factor", (0.4, 0.3, 0.2, 0.1, 0.05), (0.4, 0.3, 0.2, 0.1, 0.05)),
}


def _check(name: str, severity: int) -> Corruption:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is outside 1..5")
    return CORRUPTIONS[name]


def corrupt(image: np.ndarray, name: str, severity: int, seed: int, image_id: int) -> np.ndarray:
    """``image`` (uint8 H x W x 3) under corruption ``name`` at ``severity``; the same pixels for the same seed and id."""
    corruption = _check(name, severity)
    image = np.asarray(image, dtype=np.uint8)
    value = corruption.value(severity, min(image.shape[:2]))
    # one generator per (seed, image, corruption): every severity scales the same noise field
    rng = np.random.default_rng([int(seed), int(image_id), list(CORRUPTIONS).index(name)])
    out = corruption.apply(image, int(value) if name == "jpeg_compression" else value, rng)
    return out.reshape(image.shape)


def severity_parameters(side: int) -> dict[str, dict[str, Any]]:
    """Each corruption's parameter name and its value at severities 1-5 for images of shorter side ``side``."""
    return {name: {"parameter": c.parameter, "table": "ImageNet-C" if reference_side(side) == 224 else "Tiny-ImageNet-C",
                   "values": [round(c.value(s, side), 4) for s in SEVERITIES]} for name, c in CORRUPTIONS.items()}


class CorruptedImageStore:
    """An image store that answers for another one with its images corrupted (one corruption, one severity).

    Like :class:`vlbench.results.ablation.AblatedImageStore` it offers only ``get`` (and ``load`` where the
    real store has it): no decoded cache keyed by the transform (``for_transform``) is ever read or filled
    with corrupted pixels. ``calls`` counts the requests, so a pass that never read pixels can be told apart.
    """

    def __init__(self, store: Any, name: str, severity: int, seed: int) -> None:
        _check(name, severity)
        self.store, self.name, self.severity, self.seed = store, name, int(severity), int(seed)
        self.image_size = getattr(store, "image_size", None)
        self.calls = 0

    def ids(self) -> list[int]:
        """Every image id of the wrapped store."""
        return self.store.ids()

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Pixels (B, H, W, 3) uint8, each image corrupted."""
        self.calls += 1
        real = self.store.get(list(image_ids)).numpy()
        return torch.from_numpy(np.stack([corrupt(img, self.name, self.severity, self.seed, int(i))
                                          for img, i in zip(real, image_ids)]))

    def __getattr__(self, name: str) -> Any:
        # stores that decode one file at a time expose ``load``; answer it only when the real store does
        if name == "load" and hasattr(self.store, "load"):
            return self._load
        raise AttributeError(name)

    def _load(self, image_id: int) -> np.ndarray:
        self.calls += 1
        return corrupt(np.asarray(self.store.load(int(image_id))), self.name, self.severity, self.seed, int(image_id))
