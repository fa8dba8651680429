"""ImageNet-pretrained torchvision ResNets as grid-feature backbones, and the image transform they expect.

A backbone is the ResNet trunk up to ``layer4`` (stride 32; ``avgpool`` and ``fc`` dropped) with frozen
BatchNorm statistics (torchvision's ``FrozenBatchNorm2d``, as detection and grid-feature VQA models use
them: fine-tuning batches are too small to re-estimate ImageNet statistics). Its weights come from
torchvision's published ImageNet checkpoints (``IMAGENET1K_V1`` / ``IMAGENET1K_V2``, downloaded once into
``$TORCH_HOME``), from a local file holding the model's ``state_dict`` (``.pth``/``.pt`` or
``.safetensors``), or nowhere (random initialisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from vlbench.data.images import SquareResize
from vlbench.errors import SpecError, VLBenchError

__all__ = ["TORCHVISION_RESNETS", "IMAGENET_MEAN", "IMAGENET_STD", "ImageNetResize", "resnet_trunk"]

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


class ImageNetResize(SquareResize):
    """Bilinear resize to ``size`` x ``size`` and per-channel ImageNet mean/std: what torchvision models expect."""

    def __init__(self, size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__(size)
        self.channel_mean = tuple(float(m) for m in mean)
        self.channel_std = tuple(float(s) for s in std)

    def from_uint8(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, H, W, 3) uint8 tensor of equal-size images -> model inputs."""
        values = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.channel_mean, dtype=values.dtype, device=values.device).view(1, -1, 1, 1)
        std = torch.tensor(self.channel_std, dtype=values.dtype, device=values.device).view(1, -1, 1, 1)
        values = (values - mean) / std
        if values.shape[-1] != self.size or values.shape[-2] != self.size:
            values = torch.nn.functional.interpolate(values, size=(self.size, self.size), mode="bilinear",
                                                     align_corners=False)
        return {"pixel_values": values}

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ImageNet (mean, std): the 0-1 image is ``pixel_values * std + mean``."""
        return self.channel_mean, self.channel_std

    def signature(self) -> str:
        """e.g. ``square-384-imagenet[0.485,0.456,0.406]/[0.229,0.224,0.225]``."""
        fmt = lambda xs: ",".join(f"{x:g}" for x in xs)  # noqa: E731
        return f"square-{self.size}-imagenet[{fmt(self.channel_mean)}]/[{fmt(self.channel_std)}]"


def feature_width(arch: str) -> int:
    """Channels of the trunk's last stage."""
    return _FEATURES[arch]


def _state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """The full model's state_dict from a torchvision weights name or a local file."""
    import torchvision

    path = Path(weights).expanduser()
    if path.suffix in {".pth", ".pt", ".bin", ".safetensors"} or path.exists():
        if not path.is_file():
            raise VLBenchError(f"{arch}: backbone weights file {str(path)!r} does not exist; "
                               "set baseline.config.backbone_weights to a saved state_dict (or IMAGENET1K_V1).")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  any unreadable file is one clear line
            raise VLBenchError(f"{arch}: cannot read backbone weights {str(path)!r}: {str(exc).splitlines()[0]}") from exc
        return state.get("state_dict", state) if isinstance(state, dict) else state
    enum = torchvision.models.get_model_weights(arch)
    try:
        chosen = enum[weights]
    except KeyError:
        known = ", ".join(w.name for w in enum)
        raise SpecError(f"{arch}: unknown backbone_weights {weights!r}; use one of {known}, a file path, or null.") from None
    try:
        return chosen.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001  offline, proxy, disk full: one line that says how to get the file
        raise VLBenchError(
            f"{arch}: cannot download torchvision's {weights} weights ({str(exc).splitlines()[0]}); download "
            f"{chosen.url} once and set baseline.config.backbone_weights=/path/to/{Path(chosen.url).name}."
        ) from exc


def resnet_trunk(arch: str, weights: Optional[str]) -> nn.Module:
    """A torchvision ResNet up to ``layer4`` with frozen BatchNorm, from ``weights`` (name, file) or random."""
    import torchvision
    from torchvision.ops.misc import FrozenBatchNorm2d

    if arch not in TORCHVISION_RESNETS:
        raise SpecError(f"unknown torchvision backbone {arch!r}; use one of {', '.join(TORCHVISION_RESNETS)}.")
    model = getattr(torchvision.models, arch)(weights=None, norm_layer=FrozenBatchNorm2d)
    if weights:
        state = _state_dict(arch, weights)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (RuntimeError, AttributeError) as exc:  # shape mismatches, or not a state_dict at all
            raise VLBenchError(f"{arch}: backbone weights {weights!r} do not fit a torchvision {arch}: "
                               f"{str(exc).splitlines()[-1].strip()}") from exc
        missing = [k for k in missing if not k.startswith("fc.")]
        unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            first = (missing or unexpected)[0]
            what = "missing" if missing else "unexpected"
            raise VLBenchError(
                f"{arch}: backbone weights {weights!r} do not fit a torchvision {arch} ({len(missing)} missing, "
                f"{len(unexpected)} unexpected keys; first {what}: {first!r})."
            )
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)
