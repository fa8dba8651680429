"""Pretrained parts that model types compose: image encoders (EfficientNet-Lite), their settings and weights' identity.

A part is an ``nn.Module`` with its own preprocessing (the transform its weights were trained with) and
an identity (the digest of its weights file), so that caches and config hashes keyed by it change when
the weights change. See docs/pretrained.md, "The offline pretrained track".
"""

from vlbench.models.parts.effnet import EFFNET_LITE_VARIANTS, EfficientNetLitePart, load_effnet_lite
from vlbench.models.parts.image_transform import CroppedPixels, ImagePreprocessing, PretrainedImageTransform
from vlbench.models.parts.settings import ImagePartSettings, build_image_part
from vlbench.models.parts.weights import PackagedWeights, packaged_weights

__all__ = [
    "EFFNET_LITE_VARIANTS",
    "EfficientNetLitePart",
    "load_effnet_lite",
    "ImagePreprocessing",
    "PretrainedImageTransform",
    "CroppedPixels",
    "ImagePartSettings",
    "build_image_part",
    "PackagedWeights",
    "packaged_weights",
]
