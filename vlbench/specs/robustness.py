"""The robustness settings of training: ``training.augment`` and ``training.adversarial`` (see docs/robustness.md).

Both are absent by default, and an absent block is left out of the dumped config (see
``TrainingConfig``), so runs that use neither keep the config hash and the record they had before.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

from vlbench.specs.settings_base import SettingsModel

__all__ = ["CropAugment", "ColorJitter", "AugmentConfig", "AdversarialConfig", "IMAGE_AUGMENTATIONS",
           "TEXT_AUGMENTATIONS", "ADVERSARIAL_MODALITIES"]

IMAGE_AUGMENTATIONS = ("flip", "crop", "rotation", "color_jitter")
TEXT_AUGMENTATIONS = ("token_dropout", "token_mask", "word_shuffle")
ADVERSARIAL_MODALITIES = ("text", "image")


class _Block(SettingsModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class CropAugment(_Block):
    """Random resized crop (as torchvision's RandomResizedCrop): a random part of the image, resized back."""

    scale: tuple[float, float] = Field((0.8, 1.0), description="range of the crop's area, as a fraction of the image")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="range of the crop's aspect ratio (width/height), "
                                       "drawn log-uniformly")
    p: float = Field(1.0, gt=0, le=1, description="probability that an image is cropped")

    @model_validator(mode="after")
    def _ranges(self) -> "CropAugment":
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop.scale {list(self.scale)} must satisfy 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"crop.ratio {list(self.ratio)} must satisfy 0 < low <= high")
        return self


class ColorJitter(_Block):
    """Colour jitter (as torchvision's ColorJitter, in this fixed order): each factor drawn per image."""

    brightness: float = Field(0.0, ge=0, le=1, description="brightness factor drawn from [1-b, 1+b]")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast factor drawn from [1-c, 1+c]")
    saturation: float = Field(0.0, ge=0, le=1, description="saturation factor drawn from [1-s, 1+s]")
    hue: float = Field(0.0, ge=0, le=0.5, description="hue shift drawn from [-h, h] of a full turn")
    p: float = Field(1.0, gt=0, le=1, description="probability that an image is jittered")

    @model_validator(mode="after")
    def _does_something(self) -> "ColorJitter":
        if not (self.brightness or self.contrast or self.saturation or self.hue):
            raise ValueError("color_jitter changes nothing: give brightness, contrast, saturation or hue > 0")
        return self

    @property
    def changes_colours(self) -> bool:
        """Whether it can turn one named colour into another (hue or saturation; brightness and contrast cannot)."""
        return bool(self.hue or self.saturation)


class AugmentConfig(_Block):
    """Task-aware data augmentation of training batches (never of validation or test)."""

    flip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip; the task rewrites its texts "
                        "(left <-> right) in the question and in the answers, captions or targets")
    crop: Optional[CropAugment] = Field(None, description="random resized crop")
    rotation: float = Field(0.0, ge=0, le=30, description="rotation by an angle drawn from [-r, r] degrees")
    color_jitter: Optional[ColorJitter] = Field(None, description="brightness, contrast, saturation and hue jitter")
    token_dropout: float = Field(0.0, ge=0, lt=1, description="probability that an input word piece is deleted")
    token_mask: float = Field(0.0, ge=0, lt=1, description="probability that an input word piece becomes [MASK]")
    word_shuffle: int = Field(0, ge=0, le=16, description="word-order noise: no input word piece moves more than this "
                              "many places (Lample et al. 2018); 0: off")

    @model_validator(mode="after")
    def _does_something(self) -> "AugmentConfig":
        if not (self.image_augmentations() or self.text_augmentations()):
            raise ValueError("augment enables nothing: set flip, crop, rotation, color_jitter, token_dropout, "
                             "token_mask or word_shuffle (or leave augment out)")
        return self

    def image_augmentations(self) -> list[str]:
        """The image augmentations it enables."""
        on = {"flip": self.flip > 0, "crop": self.crop is not None, "rotation": self.rotation > 0,
              "color_jitter": self.color_jitter is not None}
        return [name for name in IMAGE_AUGMENTATIONS if on[name]]

    def text_augmentations(self) -> list[str]:
        """The text augmentations it enables (the flip's rewriting of texts is not one: it follows the image)."""
        on = {"token_dropout": self.token_dropout > 0, "token_mask": self.token_mask > 0,
              "word_shuffle": self.word_shuffle > 0}
        return [name for name in TEXT_AUGMENTATIONS if on[name]]


class AdversarialConfig(_Block):
    """Adversarial training in embedding space: FreeLB (Zhu et al., ICLR 2020) as VILLA (Gan et al., NeurIPS 2020)."""

    steps: int = Field(3, ge=1, le=64, description="K: projected gradient ascent steps per training batch")
    epsilon: float = Field(1.0, gt=0, description="radius of the ball each example's perturbation stays in, per "
                           "modality (L2: Frobenius norm over the example's embeddings; linf: largest entry)")
    step_size: float = Field(0.1, gt=0, description="ascent step: L2, the normalised gradient times this; linf, its "
                             "sign times this")
    init: float = Field(0.0, ge=0, description="initial perturbation: uniform noise of this magnitude (FreeLB's "
                        "adv_init_mag: L2, norm up to init; linf, entries up to init); 0 starts at the clean input")
    norm: Literal["l2", "linf"] = Field("l2", description="the ball's norm; FreeLB and VILLA use l2")
    modalities: Optional[list[Literal["text", "image"]]] = Field(
        None, min_length=1,
        description="what is perturbed: text (the word-embedding output) and/or image (image features or patch "
        "embeddings); null: every modality the model reads")

    @model_validator(mode="after")
    def _perturbs_something(self) -> "AdversarialConfig":
        if self.steps == 1 and not self.init:
            raise ValueError("adversarial with steps=1 and init=0 only repeats the clean loss: give steps >= 2 (the "
                             "first step starts at the clean input) or init > 0")
        return self

    @field_validator("modalities")
    @classmethod
    def _distinct(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"modalities {value} names one twice")
        return value
