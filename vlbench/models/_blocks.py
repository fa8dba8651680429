"""Building blocks shared by the image-only and co-attention models: BERT-style layers and grid visual features.

Layer and sub-module names follow transformers' BERT (``attention.self.query``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense``) so that PEFT targets written for BERT and ViLT (LoRA on
``query``/``value``, adapters after ``output.dense``) apply to these models unchanged.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from vlbench.errors import SpecError
from vlbench.models.base import EncoderConfig, patch_problem
from vlbench.models.content import WEIGHTS_FILE
from vlbench.models.parts.settings import ImagePartSettings

__all__ = [
    "VisualSettings",
    "Attention",
    "TransformerLayer",
    "small_resnet",
    "grid_boxes",
    "VisualStream",
    "masked_mean",
]


class VisualSettings(EncoderConfig):
    """Settings of a visual stream: grid features from a small ResNet (or patch embeddings), then self-attention."""

    hidden_size: int = Field(128, ge=8)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    backbone: Literal["resnet", "patch", "resnet18", "resnet34", "resnet50", "resnet101"] = Field(
        "resnet", description="grid features: a small ResNet built from config, patches, or a torchvision ResNet trunk"
    )
    backbone_weights: Optional[str] = Field(
        None, description="torchvision ResNet weights: IMAGENET1K_V1 / IMAGENET1K_V2 (downloaded once), a local "
        "state_dict file, or null (random initialisation)", json_schema_extra=WEIGHTS_FILE,
    )
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1,
                                description="ResNet stage widths (one BasicBlock stage each, stride 2 after the first)")
    freeze_backbone: bool = Field(False, description="keep the grid backbone fixed (no gradients, eval mode), as "
                                  "with pre-extracted CNN features")
    grid_size: int = Field(4, ge=1, description="visual regions per side (the shapes world is a 4x4 grid)")
    image_part: Optional[ImagePartSettings] = Field(
        None, description="a pretrained image-encoder part (EfficientNet-Lite0) instead of `backbone`: its cells, "
        "average-pooled to grid_size x grid_size, are the regions; frozen (features cached) or fine-tuned")
    patch_size: int = Field(16, ge=1, description="patch backbone: patch side in pixels")
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)

    def task_problem(self, image_size: int, pretrained: bool) -> Optional[str]:
        """The patch backbone cuts the task's images into ``patch_size`` patches (the ResNets take any size)."""
        return patch_problem(image_size, self.patch_size) if self.backbone == "patch" else None


class _QKV(nn.Module):
    def __init__(self, hidden: int, context: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(context, hidden)
        self.value = nn.Linear(context, hidden)


class _Output(nn.Module):
    def __init__(self, inner: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class Attention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (itself for self-attention), post-LN residual like BERT."""

    def __init__(self, hidden: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise SpecError(f"hidden size {hidden} is not a multiple of the number of heads {heads}.")
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.self = _QKV(hidden, hidden)
        self.output = _Output(hidden, hidden, dropout)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``context_mask`` (B, Lc) is 1 for real positions and 0 for padding."""
        context = x if context is None else context
        b, lq, h = x.shape
        split = lambda t: t.view(b, -1, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.self.query(x)), split(self.self.key(context)), split(self.self.value(context))
        mask = None if context_mask is None else context_mask[:, None, None, :].to(torch.bool)
        p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.output(out.transpose(1, 2).reshape(b, lq, h), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class TransformerLayer(nn.Module):
    """A BERT layer: self-attention then feed-forward (optionally cross-attention first, as in LXMERT)."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attention_dropout: float,
                 cross: bool = False) -> None:
        super().__init__()
        self.crossattention = Attention(hidden, heads, dropout, attention_dropout) if cross else None
        self.attention = Attention(hidden, heads, dropout, attention_dropout)
        self.intermediate = _Intermediate(hidden, inner)
        self.output = _Output(inner, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], other: Optional[torch.Tensor] = None,
                other_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``other`` is the other stream (keys and values of the cross-attention), when this layer has one."""
        if self.crossattention is not None:
            x = self.crossattention(x, other, other_mask)
        x = self.attention(x, None, mask)
        return self.output(self.intermediate(x), x)


def small_resnet(channels: list[int]) -> nn.Module:
    """A narrow ResNet from torchvision BasicBlocks: a 4x4/4 patchify stem, then one stage per width.

    The patchify stem (as in ConvNeXt) reaches the same stride-4 map as ResNet's 7x7/2 conv + max-pool at a
    fifth of the CPU cost. Norms are BatchNorm (GroupNorm is ~6x slower on CPU); when PEFT or a frozen
    backbone freezes them, ``vlbench.peft`` keeps their running statistics fixed as well.
    """
    from torchvision.models.resnet import BasicBlock, conv1x1

    layers: list[nn.Module] = [
        nn.Conv2d(3, channels[0], kernel_size=4, stride=4, bias=False),
        nn.BatchNorm2d(channels[0]),
        nn.ReLU(inplace=True),
    ]
    width = channels[0]
    for i, out in enumerate(channels):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or width != out:
            down = nn.Sequential(conv1x1(width, out, stride), nn.BatchNorm2d(out))
        layers.append(BasicBlock(width, out, stride=stride, downsample=down))
        width = out
    return nn.Sequential(*layers)


def grid_boxes(grid: int) -> torch.Tensor:
    """(grid*grid, 4) normalised boxes (x1, y1, x2, y2) of the cells of a grid, row-major."""
    steps = torch.arange(grid, dtype=torch.float32) / grid
    y, x = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([x, y, x + 1 / grid, y + 1 / grid], dim=-1).view(-1, 4)


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over the sequence axis of (B, L, H), ignoring padding."""
    if mask is None:
        return x.mean(1)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class VisualStream(nn.Module):
    """Image -> (B, grid*grid, H) region features: CNN grid (or patches) + box embedding, then self-attention.

    Like LXMERT's visual encoder, each region is the average of its projected feature and its projected
    box (x1, y1, x2, y2), both layer-normalised; the boxes are the cells of the backbone's output grid.
    """

    def __init__(self, settings: VisualSettings, num_layers: int, image_size: int, part: Optional[nn.Module] = None) -> None:
        super().__init__()
        hidden = settings.hidden_size
        self.part = part is not None
        if part is not None:  # built by the model type (see vlbench.models.parts.settings.build_image_part)
            if settings.freeze_backbone:
                raise SpecError("freeze_backbone applies to `backbone`; an image part is frozen by image_part.freeze.")
            self.backbone = part
            feature_dim = part.hidden_size
            grid = part.grid or (part.preprocessing.size + 31) // 32
        elif settings.backbone_weights and settings.backbone in ("resnet", "patch"):
            raise SpecError(f"backbone_weights applies to torchvision ResNets (resnet18/34/50/101), not to backbone "
                            f"{settings.backbone!r}; set baseline.config.backbone_weights=null.")
        elif settings.backbone.startswith("resnet") and settings.backbone != "resnet":
            from vlbench.models._torchvision import feature_width, resnet_trunk

            self.backbone = resnet_trunk(settings.backbone, settings.backbone_weights)
            feature_dim = feature_width(settings.backbone)
            grid = settings.grid_size
        elif settings.backbone == "resnet":
            self.backbone = small_resnet(settings.channels)
            feature_dim = settings.channels[-1]
            grid = settings.grid_size
        else:
            problem = settings.task_problem(image_size, pretrained=False)
            if problem:
                raise SpecError(f"{problem}.")
            self.backbone = nn.Conv2d(3, hidden, kernel_size=settings.patch_size, stride=settings.patch_size)
            feature_dim = hidden
            grid = image_size // settings.patch_size
        self.grid = grid
        self.freeze_backbone = settings.freeze_backbone
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        self.feature = nn.Linear(feature_dim, hidden)
        self.feature_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.box = nn.Linear(4, hidden)
        self.box_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(settings.dropout)
        self.register_buffer("boxes", grid_boxes(grid), persistent=False)
        self.layer = nn.ModuleList(
            TransformerLayer(hidden, settings.num_heads, settings.intermediate_size, settings.dropout,
                             settings.attention_dropout)
            for _ in range(num_layers)
        )

    def train(self, mode: bool = True) -> "VisualStream":
        """A frozen backbone stays in eval mode (its BatchNorm statistics do not move)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Region features (B, grid*grid, H)."""
        if self.part:
            regions = self.backbone(pixel_values).sequence
        else:
            maps = self.backbone(pixel_values)
            if maps.shape[-1] != self.grid or maps.shape[-2] != self.grid:
                maps = F.adaptive_avg_pool2d(maps, self.grid)
            regions = maps.flatten(2).transpose(1, 2)
        x = (self.feature_norm(self.feature(regions)) + self.box_norm(self.box(self.boxes))) / 2
        x = self.dropout(x)
        for layer in self.layer:
            x = layer(x, None)
        return x
