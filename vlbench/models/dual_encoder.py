"""Two-tower (dual) encoders: an image tower and a text tower that never see each other (CLIP-style).

``dual-encoder``: a ViT image tower (transformers ``ViTModel``) and a BERT text tower (``BertModel``),
both built from config. Task heads (projections, temperature) live in the task type that uses them.

``dual-encoder-blind``: the same text tower with the image tower replaced by a fixed random code per image
id. It never receives pixels (its modalities are text only, so batches carry none): the text-only
counterpart of ``dual-encoder``, ranking images at chance with ties broken at random rather than by index.

Both expose ``encode_image(batch)`` and ``encode_text(batch)``, each returning an :class:`EncoderOutput`
(pooled features and the token sequence); ``forward`` returns the two pooled vectors concatenated
(late fusion), so the model also serves classification tasks.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import BuildContext, Encoder, EncoderConfig, EncoderOutput, bert_from_config, patch_problem

__all__ = ["DualEncoderConfig", "DualEncoder", "BlindDualEncoder", "image_id_codes", "bert_tower", "vit_tower",
           "check_not_pretrained"]


class DualEncoderConfig(EncoderConfig):
    """Tower sizes of a dual encoder built from config."""

    hidden_size: int = Field(128, ge=8)
    image_layers: int = Field(2, ge=1, description="ViT layers of the image tower")
    text_layers: int = Field(2, ge=1, description="BERT layers of the text tower")
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    patch_size: int = Field(16, ge=1)
    pooling: Literal["cls", "mean"] = Field("mean", description="pooled feature: the [CLS] state or the token mean")
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)

    def task_problem(self, image_size: int, pretrained: bool) -> Optional[str]:
        """The ViT image tower cuts the task's images into ``patch_size`` patches."""
        return patch_problem(image_size, self.patch_size)


def bert_tower(config: DualEncoderConfig, context: BuildContext) -> nn.Module:
    """The text tower (a BERT built from config, no pooler) shared by the two-tower model types."""
    return bert_from_config(
        context, hidden_size=config.hidden_size, num_layers=config.text_layers, num_heads=config.num_heads,
        intermediate_size=config.intermediate_size, dropout=config.dropout,
        attention_dropout=config.attention_dropout, pooling=False,
    )


def vit_tower(config: DualEncoderConfig, context: BuildContext) -> nn.Module:
    """The image tower (a ViT built from config, no pooler) shared by the two-tower model types."""
    from transformers import ViTConfig, ViTModel

    problem = config.task_problem(context.image_size, pretrained=False)
    if problem:
        raise SpecError(f"dual-encoder: {problem}.")
    return ViTModel(
        ViTConfig(
            hidden_size=config.hidden_size,
            num_hidden_layers=config.image_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attention_dropout,
            image_size=context.image_size,
            patch_size=config.patch_size,
            num_channels=3,
        ),
        add_pooling_layer=False,
    )


def _pool(sequence: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return sequence[:, 0]
    weights = mask.to(sequence.dtype).unsqueeze(-1)
    return (sequence * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def check_not_pretrained(name: str, pretrained: Optional[str]) -> None:
    """Refuse a ``pretrained`` setting for a model type whose towers are built from config only."""
    if pretrained:
        raise SpecError(
            f"{name}: `pretrained` is not supported yet (the towers are built from config); remove it from the "
            f"baseline spec or --set baseline.pretrained=null."
        )


class DualEncoder(Encoder):
    """A ViT image tower and a BERT text tower; ``hidden_size`` is the late-fusion width (2 x tower)."""

    Config = DualEncoderConfig
    modalities = ("text", "image")

    def __init__(self, config: DualEncoderConfig, text_tower: nn.Module, image_tower: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.tower_size = config.hidden_size
        self.hidden_size = 2 * config.hidden_size

    @classmethod
    def from_spec(cls, config: DualEncoderConfig, pretrained: Optional[str], context: BuildContext) -> "DualEncoder":
        """Both towers from config, sized by the spec."""
        check_not_pretrained("dual-encoder", pretrained)
        return cls(config, bert_tower(config, context), vit_tower(config, context))

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The text tower's word embeddings and the image tower's patch embeddings."""
        return {"text": self.text_tower.get_input_embeddings(), "image": self.image_tower.embeddings.patch_embeddings}

    def encode_text(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Text tower over ``input_ids``/``attention_mask``: pooled (B, H), sequence (B, L, H), mask (B, L)."""
        mask = batch["attention_mask"]
        out = self.text_tower(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch.get("token_type_ids"))
        seq = out.last_hidden_state
        return EncoderOutput(pooled=_pool(seq, mask, self.config.pooling), sequence=seq, mask=mask)

    def encode_image(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Image tower over ``pixel_values``: pooled (B, H), sequence ([CLS] + patches) and an all-ones mask."""
        seq = self.image_tower(pixel_values=batch["pixel_values"]).last_hidden_state
        mask = torch.ones(seq.shape[:2], dtype=torch.long, device=seq.device)
        return EncoderOutput(pooled=_pool(seq, mask, self.config.pooling), sequence=seq, mask=mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Late fusion: [image pooled; text pooled] (B, 2H); the towers never attend to each other."""
        return EncoderOutput(pooled=torch.cat([self.encode_image(batch).pooled, self.encode_text(batch).pooled], -1))


def image_id_codes(image_ids: torch.Tensor, dim: int, salt: int = 0) -> torch.Tensor:
    """A fixed standard-normal vector per image id (the same id always gets the same code), no pixels read."""
    codes = torch.empty(len(image_ids), dim)
    generator = torch.Generator()
    for row, image_id in enumerate(image_ids.tolist()):
        generator.manual_seed((int(image_id) * 1_000_003 + salt) % (2**63 - 1))
        codes[row] = torch.randn(dim, generator=generator)
    return codes


class BlindDualEncoder(DualEncoder):
    """``dual-encoder`` whose image tower sees a random code per image id instead of the image.

    The code carries no image content, only identity: training can memorise training ids, but on unseen
    images the ranking is chance. A constant image feature would tie every image instead, and the
    retrieval metric counts ties against the model (it would score below chance).
    """

    modalities = ("text",)
    code_size = 64

    @classmethod
    def from_spec(cls, config: DualEncoderConfig, pretrained: Optional[str], context: BuildContext) -> "BlindDualEncoder":
        """The text tower from config and a small learned map from id codes to the tower width."""
        check_not_pretrained("dual-encoder-blind", pretrained)
        image_tower = nn.Sequential(nn.Linear(cls.code_size, config.hidden_size), nn.LayerNorm(config.hidden_size))
        return cls(config, bert_tower(config, context), image_tower)

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The text tower's word embeddings (no image is read)."""
        return {"text": self.text_tower.get_input_embeddings()}

    def encode_image(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Features from ``image_ids`` alone; ``pixel_values`` are never read, even when present."""
        ids = batch["image_ids"]
        device = next(self.image_tower.parameters()).device
        seq = self.image_tower(image_id_codes(ids, self.code_size).to(device)).unsqueeze(1)
        mask = torch.ones(seq.shape[:2], dtype=torch.long, device=device)
        return EncoderOutput(pooled=seq[:, 0], sequence=seq, mask=mask)
