"""PGD on the image pixels within an L-infinity budget (Madry et al., ICLR 2018), at test time.

The attack perturbs the image the model reads (after its transform's resize or crop, before its
normalisation) on the 0-1 pixel scale: ``eps`` = 4/255 lets every pixel of every channel move by at most 4
of 255 steps, and the pixels stay in the range. The normalisation is learned from the transform itself:
the normalised values of a black and of a white image give each channel's offset and scale, so the
budget is exact for any per-channel affine normalisation (vlbench's square resize, the pretrained parts'
mean/std, Hugging Face processors). Madry's recipe: a uniform random start inside the ball, ``steps``
signed-gradient steps of ``2.5 * eps / steps`` on the task's training loss, each projected back onto the
ball and the pixel range. The random start is drawn from a generator seeded by (seed, the batch's first
item), so the attack does not depend on which baseline ran before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["STEP_FACTOR", "PixelScale", "pixel_scale", "pgd", "PGDBatches"]

STEP_FACTOR = 2.5  # Madry et al.'s step size: 2.5 * eps / steps


@dataclass
class PixelScale:
    """Per-channel normalised values of a black (``lo``) and a white (``hi``) pixel, shaped (1, C, 1, 1)."""

    lo: torch.Tensor
    hi: torch.Tensor
    finish: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # uint8 crops -> the model's float input

    def to(self, device: torch.device) -> "PixelScale":
        """The same scale on ``device``."""
        return PixelScale(self.lo.to(device), self.hi.to(device), self.finish)

    def model_input(self, batch_pixels: torch.Tensor) -> torch.Tensor:
        """The float input the model computes with (uint8 crops finished by the transform)."""
        if batch_pixels.dtype == torch.uint8:
            if self.finish is None:
                raise ValueError("uint8 pixel_values with no transform to finish them")
            return self.finish(batch_pixels)
        return batch_pixels.float()

    def to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Normalised values -> the 0-1 pixel scale."""
        return ((values - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """The 0-1 pixel scale -> normalised values."""
        return self.lo + unit * (self.hi - self.lo)


def pixel_scale(transform: Callable[[list[np.ndarray]], dict[str, torch.Tensor]], shape: tuple[int, ...]) -> PixelScale:
    """The :class:`PixelScale` of ``transform`` for images of ``shape`` (H, W, 3), from a black and a white image."""
    finish = getattr(transform, "full", None)  # CroppedPixels: uint8 crops that the model's part finishes
    finish = finish.finish if finish is not None else None

    def centre(value: int) -> torch.Tensor:
        pixels = transform([np.full(shape, value, dtype=np.uint8)])["pixel_values"]
        if pixels.dtype == torch.uint8:
            pixels = finish(pixels)
        h, w = pixels.shape[-2] // 2, pixels.shape[-1] // 2
        return pixels[0, :, h, w].float().view(1, -1, 1, 1)

    lo, hi = centre(0), centre(255)
    if not bool((hi > lo).all()):
        raise ValueError("the transform does not map white above black on every channel; PGD's budget is undefined")
    return PixelScale(lo, hi, finish)


def pgd(loss: Callable[[torch.Tensor], torch.Tensor], clean: torch.Tensor, eps: float, steps: int,
        generator: torch.Generator, step_size: Optional[float] = None) -> torch.Tensor:
    """Madry's PGD: the point of the L-inf ``eps`` ball around ``clean`` (0-1 pixels) where ``loss`` is high.

    ``loss`` maps 0-1 pixels to a scalar to ascend. The result stays within ``eps`` of ``clean`` and in [0, 1].
    """
    step = STEP_FACTOR * eps / max(steps, 1) if step_size is None else step_size
    clean = clean.detach()
    start = (torch.rand(clean.shape, generator=generator, dtype=torch.float32) * 2 - 1) * eps
    low, high = (clean - eps).clamp(min=0.0), (clean + eps).clamp(max=1.0)
    x = torch.max(torch.min(clean + start.to(clean.device, clean.dtype), high), low)
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss(x), x)
        x = torch.max(torch.min(x.detach() + step * grad.sign(), high), low)
    return x.detach()


class PGDBatches:
    """A batch filter for one evaluation pass: each collated batch's pixels replaced by their PGD counterpart.

    ``objective(batch)`` is the task's training loss of the model on a batch (what PGD ascends). ``calls``
    counts the batches attacked; ``loss_clean`` / ``loss_attacked`` sum the objective before and after.
    """

    def __init__(self, objective: Callable[[dict[str, torch.Tensor]], torch.Tensor], scale: PixelScale, eps: float,
                 steps: int, seed: int, device: torch.device) -> None:
        self.objective, self.scale = objective, scale.to(device)
        self.eps, self.steps, self.seed, self.device = float(eps), int(steps), int(seed), device
        self.calls = 0
        self.loss_clean = self.loss_attacked = 0.0

    def __call__(self, split: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the device with attacked ``pixel_values``."""
        self.calls += 1
        batch = {k: v.to(self.device) for k, v in batch.items()}
        clean = self.scale.to_unit(self.scale.model_input(batch["pixel_values"]))

        def loss(unit: torch.Tensor) -> torch.Tensor:
            return self.objective({**batch, "pixel_values": self.scale.from_unit(unit)})

        first = int(batch["index"][0]) if "index" in batch and batch["index"].numel() else 0
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, first]).generate_state(1)[0]))
        attacked = pgd(loss, clean, self.eps, self.steps, generator)
        with torch.no_grad():
            self.loss_clean += float(loss(clean))
            self.loss_attacked += float(loss(attacked))
        return {**batch, "pixel_values": self.scale.from_unit(attacked)}
