"""Single-stream baseline: ViLT (transformers ``ViltModel``), text tokens and image patches in one transformer."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from vlbench.data.images import ImageTransform, ProcessorTransform
from vlbench.errors import SpecError, VLBenchError
from vlbench.models._blocks import masked_mean
from vlbench.models.base import (
    patch_problem,
    BuildContext,
    Encoder,
    EncoderConfig,
    EncoderOutput,
    check_text_positions,
    check_vocabulary,
    load_pretrained,
)

__all__ = ["ViltConfigSpec", "ViltEncoder", "ConvPatchStem"]


class ConvPatchStem(nn.Module):
    """Early-convolution patchifier (Xiao et al., 2021): stride-2 3x3 convs down to one vector per patch.

    Stands in for ViLT's single linear patch projection; it trains faster from scratch and keeps the
    same token grid. ``weight`` exposes the last conv so transformers' dtype/shape look-ups still work.
    """

    def __init__(self, hidden_size: int, patch_size: int, num_channels: int = 3) -> None:
        super().__init__()
        if patch_size & (patch_size - 1) or patch_size < 2:
            raise SpecError(f"vilt: patch_embedding 'conv' needs a power-of-two patch_size, got {patch_size}.")
        layers: list[nn.Module] = []
        channels, width = num_channels, max(hidden_size // 4, 16)
        size = 1
        while size < patch_size:
            out = min(width, hidden_size)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels, width, size = out, width * 2, size * 2
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, hidden_size, 1)

    @property
    def weight(self) -> torch.Tensor:
        """The last layer's weight (transformers reads ``projection.weight.dtype``)."""
        return self.out.weight

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, hidden, H / patch, W / patch)."""
        return self.out(self.body(pixels))


class ViltConfigSpec(EncoderConfig):
    """Size of a ViLT built from config (ignored, except dropout, when ``pretrained`` is set)."""

    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    patch_size: int = Field(16, ge=1)
    patch_embedding: Literal["linear", "conv"] = Field("linear", description="linear (ViLT) or an early-conv stem")
    pooling: Literal["cls", "mean"] = Field(
        "cls", description="pooler input: the text [CLS] token (ViLT) or the mean of all tokens (text and image)"
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)

    def task_problem(self, image_size: int, pretrained: bool) -> Optional[str]:
        """A ViLT built from config cuts the task's images into ``patch_size`` patches (a pretrained one: its own)."""
        if pretrained and self.patch_embedding == "conv":
            return ("patch_embedding 'conv' would replace the pretrained patch projection with an untrained stem; "
                    "with `pretrained:` set baseline.config.patch_embedding=linear (and pooling=cls, as ViLT was trained)")
        if self.patch_embedding == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            return f"patch_embedding 'conv' needs a power-of-two patch_size, got {self.patch_size}"
        return None if pretrained else patch_problem(image_size, self.patch_size)


def _load_processor(pretrained: str) -> Any:
    """The checkpoint's ViltImageProcessor (its ``preprocessor_config.json``), with one clear line when absent."""
    from transformers import ViltImageProcessor

    try:
        return ViltImageProcessor.from_pretrained(pretrained)
    except (OSError, ValueError) as exc:
        raise VLBenchError(
            f"vilt: cannot load the image processor of {pretrained!r} ({str(exc).splitlines()[0]}); a pretrained ViLT "
            "sees images through its own processor: point `pretrained:` at a folder with preprocessor_config.json "
            "(as `huggingface-cli download dandelin/vilt-b32-mlm --local-dir DIR` writes it)."
        ) from exc


class ViltEncoder(Encoder):
    """ViltModel; pooled output = its pooler (dense + tanh) over the text [CLS] position or the mean of all tokens."""

    Config = ViltConfigSpec
    modalities = ("text", "image")

    def __init__(self, vilt: torch.nn.Module, pooling: str = "cls", processor: Any = None) -> None:
        super().__init__()
        self.vilt = vilt
        self.pooling = pooling
        self.hidden_size = vilt.config.hidden_size
        self.processor = processor  # the pretrained checkpoint's ViltImageProcessor (None: built from config)

    @classmethod
    def from_spec(cls, config: ViltConfigSpec, pretrained: Optional[str], context: BuildContext) -> "ViltEncoder":
        """A ViltModel from a hub id / local directory (e.g. dandelin/vilt-b32-mlm) or from config."""
        from transformers import ViltConfig, ViltModel

        problem = config.task_problem(context.image_size, pretrained=bool(pretrained))  # also checked when planned
        if problem:
            raise SpecError(f"vilt: {problem}.")
        processor = None
        if pretrained:
            vilt = load_pretrained(
                ViltModel,
                pretrained,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.attention_dropout,
            )
            check_text_positions(vilt.config.max_position_embeddings, context, "vilt", pretrained)
            check_vocabulary(vilt.config.vocab_size, context, "vilt", pretrained)
            processor = _load_processor(pretrained)
        else:
            vilt = ViltModel(
                ViltConfig(
                    vocab_size=len(context.tokenizer),
                    hidden_size=config.hidden_size,
                    num_hidden_layers=config.num_layers,
                    num_attention_heads=config.num_heads,
                    intermediate_size=config.intermediate_size,
                    hidden_dropout_prob=config.dropout,
                    attention_probs_dropout_prob=config.attention_dropout,
                    image_size=context.image_size,
                    patch_size=config.patch_size,
                    max_position_embeddings=max(context.max_text_length, 8),
                    max_image_length=-1,
                    pad_token_id=context.tokenizer.pad_token_id,
                ),
                add_pooling_layer=True,
            )
            # the original ViLT draws these from a truncated normal; transformers leaves them at zero
            nn.init.trunc_normal_(vilt.embeddings.position_embeddings, std=0.02)
            nn.init.trunc_normal_(vilt.embeddings.cls_token, std=0.02)
        if config.patch_embedding == "conv":
            vilt.embeddings.patch_embeddings.projection = ConvPatchStem(vilt.config.hidden_size, vilt.config.patch_size)
        return cls(vilt, config.pooling, processor)

    def image_transform(self) -> Optional[ImageTransform]:
        """Pretrained: the checkpoint's own ViltImageProcessor (shorter side 384, mean/std 0.5, padding + mask)."""
        return ProcessorTransform(self.processor) if self.processor is not None else None

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The word embeddings and the patch embeddings (linear projection or conv stem, before positions)."""
        embeddings = self.vilt.embeddings
        return {"text": embeddings.text_embeddings.word_embeddings, "image": embeddings.patch_embeddings}

    def _image_embeds(self, pixel_values: torch.Tensor) -> Optional[torch.Tensor]:
        """Patch embeddings + [CLS] + position embeddings, batched.

        ViltEmbeddings.visual_embed supports variable-size images with a per-example Python loop
        (interpolated position embeddings, random patch sampling). For full, fixed-size images that
        loop computes exactly this (bilinear interpolation to the same grid is the identity and the
        patch order does not matter to attention), so the batched form gives the same model at a
        fraction of the cost. Other sizes fall back to ViltModel's own path.
        """
        emb = self.vilt.embeddings
        grid = self.vilt.config.image_size // self.vilt.config.patch_size
        x = emb.patch_embeddings(pixel_values)
        if x.shape[2] != grid or x.shape[3] != grid:
            return None
        x = x.flatten(2).transpose(1, 2)
        cls = emb.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + emb.position_embeddings
        return emb.dropout(x)

    def _image_mask(self, pixel_mask: torch.Tensor, pixels: torch.Tensor, image_tokens: int) -> torch.Tensor:
        """Which of ViltModel's image tokens are real: [CLS], then its valid patches first, then padding patches."""
        patch = self.vilt.config.patch_size
        grid = F.interpolate(pixel_mask[:, None].float(), size=(pixels.shape[-2] // patch, pixels.shape[-1] // patch))
        valid = grid.flatten(1).sum(1).long().clamp(max=image_tokens - 1)
        steps = torch.arange(image_tokens - 1, device=pixels.device)
        patches = (steps[None, :] < valid[:, None]).long()
        return torch.cat([torch.ones_like(patches[:, :1]), patches], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Encode question tokens and image patches jointly.

        With a ``pixel_mask`` (a processor that pads images of different sizes) ViltModel embeds the
        images itself: interpolated position embeddings per image and padding patches masked out.
        """
        pixels = batch["pixel_values"]
        pixel_mask = batch.get("pixel_mask")
        image_embeds = self._image_embeds(pixels) if pixel_mask is None else None
        if image_embeds is not None:
            kwargs = {"image_embeds": image_embeds,
                      "pixel_mask": torch.ones(image_embeds.shape[:2], dtype=torch.long, device=pixels.device)}
        else:
            if pixel_mask is None:
                pixel_mask = torch.ones((pixels.shape[0], pixels.shape[-2], pixels.shape[-1]), dtype=torch.long,
                                        device=pixels.device)
            kwargs = {"pixel_values": pixels, "pixel_mask": pixel_mask}
        out = self.vilt(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
            **kwargs,
        )
        text_len = batch["input_ids"].shape[1]
        image_tokens = out.last_hidden_state.shape[1] - text_len
        if image_embeds is not None:
            image_mask = torch.ones(pixels.shape[0], image_tokens, dtype=torch.long, device=pixels.device)
        else:
            image_mask = self._image_mask(kwargs["pixel_mask"], pixels, image_tokens)
        mask = torch.cat([batch["attention_mask"], image_mask.to(batch["attention_mask"].dtype)], dim=1)
        pooled = out.pooler_output
        if self.pooling == "mean":
            pooler = self.vilt.pooler
            pooled = pooler.activation(pooler.dense(masked_mean(out.last_hidden_state, mask)))
        return EncoderOutput(pooled=pooled, sequence=out.last_hidden_state, mask=mask)
