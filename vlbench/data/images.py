"""Images as models see them: decoded pixels from a store, turned into model inputs by the model's transform.

The dataset owns decoding (``ImageStore.get`` / ``ImageStore.load``); the *model* owns the transform
(resize, normalisation, padding and pixel mask), because a pretrained model must see images the way
it was trained. Tasks call :func:`pixel_batch`, which picks the right path for the store and transform.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["ImageTransform", "SquareResize", "ProcessorTransform", "pixel_batch"]


@runtime_checkable
class ImageTransform(Protocol):
    """Decoded images (uint8 HWC arrays of any size) -> ``pixel_values`` (B, 3, H, W) [+ ``pixel_mask``]."""

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs for a batch of images."""
        ...

    def signature(self) -> str:
        """What the transform does, for cache keys and config hashes (same signature, same tensors)."""
        ...


class SquareResize:
    """The from-scratch models' transform: bilinear resize to ``size`` x ``size``, then (x - mean) / std."""

    def __init__(self, size: int, mean: float = 0.5, std: float = 0.5) -> None:
        self.size, self.mean, self.std = int(size), float(mean), float(std)

    def from_uint8(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, H, W, 3) uint8 tensor of equal-size images -> model inputs."""
        values = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        values = (values - self.mean) / self.std
        if values.shape[-1] != self.size or values.shape[-2] != self.size:
            values = F.interpolate(values, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return {"pixel_values": values}

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Images of any sizes -> (B, 3, size, size)."""
        outs = [self.from_uint8(torch.as_tensor(np.ascontiguousarray(img)).unsqueeze(0))["pixel_values"] for img in images]
        return {"pixel_values": torch.cat(outs, 0)}

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel: the 0-1 image is ``pixel_values * std + mean``."""
        return (self.mean,) * 3, (self.std,) * 3

    def signature(self) -> str:
        """e.g. ``square-64-m0.5-s0.5``."""
        return f"square-{self.size}-m{self.mean:g}-s{self.std:g}"


class ProcessorTransform:
    """A Hugging Face image processor (e.g. ``ViltImageProcessor``) as a transform: its resize, norm, padding."""

    def __init__(self, processor: Any, name: str = "") -> None:
        self.processor = processor
        self.name = name or type(processor).__name__

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """The processor's ``pixel_values`` (and ``pixel_mask`` where it pads) as tensors."""
        out = self.processor(images=list(images), return_tensors="pt")
        batch = {"pixel_values": out["pixel_values"]}
        if "pixel_mask" in out:
            batch["pixel_mask"] = out["pixel_mask"]
        return batch

    def normalisation(self) -> Optional[tuple[tuple[float, ...], tuple[float, ...]]]:
        """(mean, std) per channel of the 0-1 image (``pixel_values * std + mean``); None: the processor does not rescale to 0-1."""
        p = self.processor
        if getattr(p, "do_rescale", True) is False or abs(float(getattr(p, "rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
            return None
        if not getattr(p, "do_normalize", False):
            return (0.0,) * 3, (1.0,) * 3
        mean, std = p.image_mean, p.image_std
        mean = tuple(mean) if isinstance(mean, (list, tuple)) else (float(mean),) * 3
        std = tuple(std) if isinstance(std, (list, tuple)) else (float(std),) * 3
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def signature(self) -> str:
        """The processor class and its settings that change the tensors."""
        keys = ("size", "size_divisor", "resample", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
                "image_mean", "image_std", "do_pad", "crop_size", "do_center_crop")
        settings = {k: getattr(self.processor, k) for k in keys if hasattr(self.processor, k)}
        return f"{self.name}:{sorted((k, repr(v)) for k, v in settings.items())}"


def pixel_batch(store: Any, image_ids: Sequence[int], transform: Optional[ImageTransform],
                default_size: int) -> dict[str, torch.Tensor]:
    """Model inputs for ``image_ids``: ``transform`` (or a square resize to ``default_size``) over the store.

    Equal-size in-memory stores with the default transform take the batched fast path.
    """
    transform = transform if transform is not None else SquareResize(default_size)
    if hasattr(store, "for_transform"):
        store = store.for_transform(transform)  # a decoded cache keyed by the transform (data option decoded_cache)
    if isinstance(transform, SquareResize) and not hasattr(store, "load"):
        return transform.from_uint8(store.get(list(image_ids)))
    if hasattr(store, "load"):
        images = [store.load(int(i)) for i in image_ids]
    else:
        images = list(store.get(list(image_ids)).numpy())
    return transform(images)
