"""Two-tower (dual) encoders: an image tower and a text tower that never see each other (CLIP-style).

``dual-encoder``: a ViT image tower (transformers ``ViTModel``) and a BERT text tower (``BertModel``),
both built from config; or towers from pretrained parts: ``pretrained:`` names a BERT-style text tower
(e.g. all-MiniLM-L6-v2, pooled by ``pooling``), and ``image_part:`` an image-encoder part as the image
tower (EfficientNet-Lite0: its pooled vector, the mean of its cells, is what the ImageNet classifier
reads; frozen, it is computed once per image and cached). ``scratch: true`` keeps both architectures
with random weights: the from-scratch twin. Task heads (projections, temperature) live in the task type
that uses them.

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
from vlbench.models.base import (
    BuildContext,
    Encoder,
    EncoderConfig,
    EncoderOutput,
    bert_from_config,
    load_pretrained_text,
    patch_problem,
)
from vlbench.models.parts.image_transform import CroppedPixels
from vlbench.models.parts.settings import ImagePartSettings, build_image_part

__all__ = ["DualEncoderConfig", "DualEncoder", "BlindDualEncoder", "image_id_codes", "bert_tower", "vit_tower",
           "pretrained_text_tower", "check_not_pretrained"]


class DualEncoderConfig(EncoderConfig):
    """Tower sizes of a dual encoder built from config, or its pretrained parts (``pretrained:``, ``image_part``)."""

    hidden_size: int = Field(128, ge=8)
    image_layers: int = Field(2, ge=1, description="ViT layers of the image tower")
    text_layers: int = Field(2, ge=1, description="BERT layers of the text tower")
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    patch_size: int = Field(16, ge=1)
    pooling: Literal["cls", "mean"] = Field("mean", description="pooled feature: the [CLS] state or the token mean")
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)
    image_part: Optional[ImagePartSettings] = Field(
        None, description="a pretrained image-encoder part (EfficientNet-Lite0) as the image tower instead of the "
        "ViT: its pooled vector (the mean of its cells); frozen (features cached per image) or fine-tuned")
    scratch: bool = Field(False, description="random weights for the pretrained text tower and image part (same "
                          "architectures, same tokenizer): the from-scratch twin")

    def task_problem(self, image_size: int, pretrained: bool) -> Optional[str]:
        """The ViT image tower cuts the task's images into ``patch_size`` patches (an image part takes any size)."""
        return None if self.image_part is not None else patch_problem(image_size, self.patch_size)


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


def check_not_pretrained(name: str, pretrained: Optional[str], config: Optional[DualEncoderConfig] = None) -> None:
    """Refuse ``pretrained``, ``image_part`` and ``scratch`` for a model type whose towers are built from config only."""
    if pretrained:
        raise SpecError(
            f"{name}: `pretrained` is not supported yet (the towers are built from config); remove it from the "
            f"baseline spec or --set baseline.pretrained=null."
        )
    if config is not None and (config.image_part is not None or config.scratch):
        field = "image_part" if config.image_part is not None else "scratch"
        raise SpecError(f"{name}: `{field}` applies to dual-encoder only (this model's towers are built from "
                        f"config); remove it from the baseline's config.")


def pretrained_text_tower(config: DualEncoderConfig, pretrained: str, context: BuildContext) -> nn.Module:
    """The text tower from a BERT-style checkpoint (or, with ``scratch``, its architecture), without its pooler."""
    from transformers import BertModel

    bert = load_pretrained_text(BertModel, pretrained, context, "dual-encoder", scratch=config.scratch,
                                dropout=config.dropout, attention_dropout=config.attention_dropout)
    bert.pooler = None  # the tower is pooled by `pooling`; unused weights would count as trainable
    return bert


class DualEncoder(Encoder):
    """An image tower and a text tower; ``hidden_size`` is the late-fusion width (the two towers' widths summed).

    ``text_width`` and ``image_width`` are the towers' own widths (``hidden_size`` of the spec for towers
    built from config; e.g. 384 for MiniLM and 1280 for EfficientNet-Lite0's pooled vector).
    """

    Config = DualEncoderConfig
    modalities = ("text", "image")

    def __init__(self, config: DualEncoderConfig, text_tower: nn.Module, image_tower: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.tower_size = config.hidden_size
        text_config = getattr(text_tower, "config", None)
        self.text_width = int(getattr(text_config, "hidden_size", config.hidden_size))
        self.image_width = int(image_tower.hidden_size) if config.image_part is not None else config.hidden_size
        self.hidden_size = self.text_width + self.image_width
        if config.image_part is not None:
            # the part returns an EncoderOutput (and may read its cache): its pooled vector passes through here,
            # where adversarial training can perturb it (see embedding_modules)
            self.image_features = nn.Identity()

    @classmethod
    def from_spec(cls, config: DualEncoderConfig, pretrained: Optional[str], context: BuildContext) -> "DualEncoder":
        """The text tower from ``pretrained`` or config, the image tower from ``image_part`` or a ViT from config."""
        if config.scratch and not (pretrained or config.image_part):
            raise SpecError("dual-encoder: scratch: true takes the architectures of `pretrained:` and `image_part:`; "
                            "set at least one (without them the towers are built from config, at random, anyway).")
        text = pretrained_text_tower(config, pretrained, context) if pretrained else bert_tower(config, context)
        if config.image_part is None:
            return cls(config, text, vit_tower(config, context))
        # one visual token, the mean of the cells: a frozen part then keeps it in memory per image
        image = build_image_part(config.image_part, scratch=config.scratch, visual_tokens=1, cache_dir=context.cache_dir)
        return cls(config, text, image)

    def image_transform(self) -> Optional[CroppedPixels]:
        """An image part's own preprocessing (finished inside the part); else the task's square resize."""
        return self.image_tower.model_transform() if self.config.image_part is not None else None

    def embedding_modules(self) -> dict[str, nn.Module]:
        """The text tower's word embeddings and the image tower's patch embeddings (an image part: its pooled vector)."""
        image = self.image_features if self.config.image_part is not None else self.image_tower.embeddings.patch_embeddings
        return {"text": self.text_tower.get_input_embeddings(), "image": image}

    def encode_text(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Text tower over ``input_ids``/``attention_mask``: pooled (B, H), sequence (B, L, H), mask (B, L)."""
        mask = batch["attention_mask"]
        out = self.text_tower(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch.get("token_type_ids"))
        seq = out.last_hidden_state
        return EncoderOutput(pooled=_pool(seq, mask, self.config.pooling), sequence=seq, mask=mask)

    def encode_image(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Image tower over ``pixel_values``: pooled (B, H), sequence ([CLS] + patches, or the part's one token),
        and an all-ones mask."""
        if self.config.image_part is not None:
            out = self.image_tower(batch["pixel_values"])
            mask = torch.ones(out.sequence.shape[:2], dtype=torch.long, device=out.sequence.device)
            return EncoderOutput(pooled=self.image_features(out.pooled), sequence=out.sequence, mask=mask)
        seq = self.image_tower(pixel_values=batch["pixel_values"]).last_hidden_state
        mask = torch.ones(seq.shape[:2], dtype=torch.long, device=seq.device)
        return EncoderOutput(pooled=_pool(seq, mask, self.config.pooling), sequence=seq, mask=mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Late fusion: [image pooled; text pooled] (B, image_width + text_width); the towers never attend to each other."""
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
        check_not_pretrained("dual-encoder-blind", pretrained, config)
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
