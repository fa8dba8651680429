"""The augmenter of training batches: one seeded draw per (run seed, epoch, batch), the task's rewrites for flips.

Each batch's randomness comes from generators seeded by the run's seed, the epoch, the batch's number in
the epoch and the process (each process of a distributed run draws its own), one per part (flip, image, text): a run is reproducible for its seed, a resumed run draws what
the uninterrupted one drew, and two baselines of one seed flip the same examples and, with the same
tokenizer, noise the same words whatever else they read. Validation and test batches never pass here.
"""

from __future__ import annotations

from typing import Optional

import torch

from vlbench.errors import TrainingError
from vlbench.specs.robustness import AugmentConfig
from vlbench.training.augment.image import affine_matrices, flip_images, from_unit, jitter_colours, to_unit, warp_images
from vlbench.training.augment.rules import AugmentInputs
from vlbench.training.augment.text import drop_tokens, mask_tokens, shuffle_words, word_pieces

__all__ = ["BatchAugmenter"]

_PARTS = {"flip": 1, "image": 2, "text": 3}


class BatchAugmenter:
    """``augmenter(batch, epoch, number)``: the training batch augmented as ``config`` says."""

    def __init__(self, config: AugmentConfig, inputs: AugmentInputs, seed: int, label: str = "train",
                 process: int = 0) -> None:
        self.config, self.inputs, self.seed, self.process = config, inputs, int(seed), int(process)
        if config.token_mask and inputs.mask_id is None:
            raise TrainingError(f"{label}: augment.token_mask needs a mask token, and the tokenizer has none; use "
                                "augment.token_dropout instead.")
        resampled = [n for n in config.image_augmentations() if n != "flip"]
        if resampled and inputs.normalisation is None:
            raise TrainingError(f"{label}: augment.{resampled[0]} needs the image transform's normalisation (mean and "
                                "std), and the model's transform does not say it.")

    def generator(self, part: str, epoch: int, number: int) -> torch.Generator:
        """The generator of one part of one batch (a pure function of seed, process, epoch, batch number and part)."""
        key = (((self.seed * 1_000_003 + epoch) * 1_000_033 + number) * 1_009 + self.process) * 7 + _PARTS[part]
        return torch.Generator().manual_seed(key % (2**63 - 1))

    def __call__(self, batch: dict[str, torch.Tensor], epoch: int, number: int) -> dict[str, torch.Tensor]:
        """A new batch dict (the input is not changed)."""
        out = dict(batch)
        examples = int(batch["index"].shape[0])
        if self.config.flip:
            self._flip(out, examples, self.generator("flip", epoch, number))
        if "pixel_values" in out and (self.config.crop or self.config.rotation or self.config.color_jitter):
            self._image(out, self.generator("image", epoch, number))
        if "input_ids" in out and self.config.text_augmentations():
            self._text(out, self.generator("text", epoch, number))
        return out

    def flips(self, batch: dict[str, torch.Tensor], examples: int, generator: torch.Generator) -> torch.Tensor:
        """(examples,) bool: which examples are mirrored (drawn, less those whose texts cannot be rewritten)."""
        chosen = torch.rand(examples, generator=generator) < self.config.flip
        device = batch["index"].device
        chosen = chosen.to(device)
        for rewrite in self.inputs.rewrites:
            if rewrite.key in batch:
                chosen &= ~rewrite.blocked(batch, examples)
        return chosen

    def _flip(self, out: dict[str, torch.Tensor], examples: int, generator: torch.Generator) -> None:
        chosen = self.flips(out, examples, generator)
        rewrites = [r for r in self.inputs.rewrites if r.key in out]
        for rewrite in rewrites:  # all read the batch before any is written (owners are never rewritten)
            out[rewrite.key] = rewrite.apply(out, chosen)
        for key in ("pixel_values", "pixel_mask"):
            if key in out:
                out[key] = flip_images(out[key], chosen.to(out[key].device))

    def _image(self, out: dict[str, torch.Tensor], generator: torch.Generator) -> None:
        pixels = out["pixel_values"]
        normalisation = self.inputs.normalisation
        assert normalisation is not None  # checked when built
        unit = to_unit(pixels, normalisation)
        if self.config.crop is not None or self.config.rotation:
            theta = affine_matrices(unit.shape[0], unit.shape[-2], unit.shape[-1], self.config.crop,
                                    self.config.rotation, generator)
            unit = warp_images(unit, theta)
            mask: Optional[torch.Tensor] = out.get("pixel_mask")
            if mask is not None:
                moved = warp_images(mask[:, None].float(), theta, mode="nearest")[:, 0]
                out["pixel_mask"] = (moved > 0.5).to(mask.dtype)
        if self.config.color_jitter is not None:
            unit = jitter_colours(unit, self.config.color_jitter, generator)
        out["pixel_values"] = from_unit(unit, normalisation, pixels.dtype)

    def _text(self, out: dict[str, torch.Tensor], generator: torch.Generator) -> None:
        cfg = self.config
        words = word_pieces(out["input_ids"], out["attention_mask"], self.inputs.special_ids)
        if cfg.word_shuffle:
            out["input_ids"] = shuffle_words(out["input_ids"], words, cfg.word_shuffle, generator)
        if cfg.token_mask:
            assert self.inputs.mask_id is not None  # checked when built
            out["input_ids"] = mask_tokens(out["input_ids"], words, cfg.token_mask, self.inputs.mask_id, generator)
        if cfg.token_dropout:
            # masked pieces stay words: they may be dropped too
            out.update(drop_tokens(out, words, cfg.token_dropout, self.inputs.pad_id, generator))
