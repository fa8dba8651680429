"""The contract between task types and model types.

A registered model type is an :class:`Encoder`: it turns a batch (token ids and/or pixels) into pooled
features, and, where it can, a sequence of features. Task types put their heads on top. Model types
that do not learn by gradient descent (the answer prior) implement :class:`FittedModel` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from torch import nn

from vlbench.errors import SpecError, VLBenchError
from vlbench.registry import MODELS
from vlbench.specs.schema import SettingsModel

if TYPE_CHECKING:
    from vlbench.data.images import ImageTransform

__all__ = [
    "EncoderConfig",
    "heads_problem",
    "patch_problem",
    "EncoderOutput",
    "BuildContext",
    "Encoder",
    "perturbable_modalities",
    "TextGenerator",
    "FittedModel",
    "validate_model_config",
    "build_model",
    "load_pretrained",
    "load_pretrained_text",
    "check_text_positions",
    "check_vocabulary",
    "normalize_pixels",
    "bert_from_config",
]


def heads_problem(hidden_size: Any, num_heads: Any, where: str = "") -> Optional[str]:
    """Why attention with ``num_heads`` heads cannot split a width of ``hidden_size`` (None: it can)."""
    if isinstance(hidden_size, int) and isinstance(num_heads, int) and num_heads > 0 and hidden_size % num_heads:
        return f"{where}hidden_size {hidden_size} is not a multiple of {where}num_heads {num_heads}"
    return None


def patch_problem(image_size: int, patch_size: int) -> Optional[str]:
    """Why square patches of ``patch_size`` pixels cannot tile an ``image_size`` image (None: they can)."""
    if patch_size > image_size:
        return f"patch_size {patch_size} is larger than the task's image_size {image_size}"
    if image_size % patch_size:
        return f"the task's image_size {image_size} is not a multiple of patch_size {patch_size}"
    return None


class EncoderConfig(SettingsModel):
    """Base for model-type settings (the ``config:`` block of a baseline spec)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @field_validator("num_heads", check_fields=False)
    @classmethod
    def _heads_divide_width(cls, value: Any, info: ValidationInfo) -> Any:
        problem = heads_problem(info.data.get("hidden_size"), value)  # hidden_size is declared before num_heads
        if problem:
            raise ValueError(problem)
        return value

    def task_problem(self, image_size: int, pretrained: bool) -> Optional[str]:
        """Why these settings cannot run on the task's images (checked when the run is planned); None: they can."""
        return None

    def cached_inputs(self) -> tuple[str, ...]:
        """The modalities whose features these settings compute once per distinct input and keep (a frozen image
        part caches per image): augmenting them would fill the cache with every augmented variant."""
        part = getattr(self, "image_part", None)
        return ("image",) if part is not None and getattr(part, "freeze", False) else ()


@dataclass
class EncoderOutput:
    """Pooled features (B, H) and, when available, token features (B, L, H) with their mask (B, L)."""

    pooled: torch.Tensor
    sequence: Optional[torch.Tensor] = None
    mask: Optional[torch.Tensor] = None


@dataclass
class BuildContext:
    """What a task tells a model type when building it."""

    task_type: str
    tokenizer: Any = None
    image_size: int = 64
    max_text_length: int = 32
    extras: dict[str, Any] = field(default_factory=dict)
    # where frozen pretrained parts keep their features (None: in memory only)
    cache_dir: Optional[Path] = None


class Encoder(nn.Module):
    """Base class of neural model types: ``forward(batch) -> EncoderOutput``."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")
    hidden_size: int

    @classmethod
    def from_spec(cls, config: EncoderConfig, pretrained: Optional[str], context: BuildContext) -> "Encoder":
        """Build the encoder from validated settings, optionally from pretrained weights."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def image_transform(self) -> Optional["ImageTransform"]:
        """How this model wants its images prepared; None: the task's square resize at its ``image_size``."""
        return None

    def embedding_modules(self) -> dict[str, nn.Module]:
        """{modality: module whose output is the modality's input embedding}: the word embeddings for text, the
        image features or patch embeddings for images; what adversarial training perturbs (docs/robustness.md).
        A model type that does not override this cannot be trained adversarially."""
        return {}


def perturbable_modalities(model_cls: Any) -> tuple[str, ...]:
    """The modalities a model type's embeddings can be perturbed in (none unless it overrides ``embedding_modules``)."""
    named = getattr(model_cls, "embedding_modules", None)
    if named is None or named is Encoder.embedding_modules:
        return ()
    return tuple(getattr(model_cls, "modalities", ()))


class TextGenerator(Encoder):
    """A model type that answers by writing text: trained on target texts (a language-model loss on the
    target tokens only) and scored on what it generates. The task writes the prompts and reads the answers.
    """

    def text_loss(self, batch: dict[str, torch.Tensor], prompts: list[str], targets: list[Optional[str]]) -> torch.Tensor:
        """Mean cross-entropy of each target (None: that row is not scored) after its prompt (and images)."""
        raise NotImplementedError

    def generate_text(self, batch: dict[str, torch.Tensor], prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuation of each prompt (after its images), special tokens dropped."""
        raise NotImplementedError

    def target_length(self, texts: list[str]) -> int:
        """Tokens the longest of ``texts`` takes as a target, its end mark included (a bound for generation)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Text generators have no pooled features; tasks call :meth:`text_loss` and :meth:`generate_text`."""
        raise VLBenchError(f"{type(self).__name__} writes text; the task must wrap it for generation.")


class FittedModel:
    """A model type fitted by counting, not by gradient descent (e.g. the answer prior)."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    @classmethod
    def from_spec(cls, config: EncoderConfig, pretrained: Optional[str], context: BuildContext) -> "FittedModel":
        """Build the model from validated settings."""
        return cls()

    def fit(self, rows: list[dict[str, Any]]) -> None:  # pragma: no cover - abstract
        """Learn from the training rows."""
        raise NotImplementedError

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:  # pragma: no cover - abstract
        """Predict one output per row."""
        raise NotImplementedError

    def parameter_counts(self) -> tuple[int, int]:
        """(trained, total) parameters behind the predictions, for the run record (a counting model has none)."""
        return 0, 0

    def fit_details(self) -> dict[str, Any]:
        """What fitting did, for the record's ``training`` block (e.g. a visual prefix trained on captions)."""
        return {}


def validate_model_config(model_type: str, config: dict[str, Any], source: str) -> EncoderConfig:
    """Validate a baseline's ``config:`` block against its model type's settings class."""
    cls = MODELS.get(model_type)
    try:
        return cls.Config.model_validate(config)
    except ValidationError as exc:
        from vlbench.specs import format_validation_error

        raise SpecError(format_validation_error(f"{source} (config of model type {model_type!r})", exc)) from exc


def build_model(model_type: str, config: dict[str, Any], pretrained: Optional[str], context: BuildContext, source: str):
    """Instantiate a registered model type from a baseline spec's settings."""
    cls = MODELS.get(model_type)
    settings = validate_model_config(model_type, config, source)
    return cls.from_spec(settings, pretrained, context)


def load_pretrained(loader: Any, name_or_path: str, *, scratch: bool = False, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with one clear line when the weights are not there (offline, typo).

    ``scratch=True`` builds the same architecture (the checkpoint's config, with ``kwargs``) with the
    library's random initialisation instead of the weights: a from-scratch twin.
    """
    from vlbench.data.text import missing_pretrained_message

    try:
        if scratch:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
            return getattr(loader, "from_config", loader)(config)
        return loader.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise VLBenchError(missing_pretrained_message(name_or_path, "model", exc)) from exc


def load_pretrained_text(loader: Any, pretrained: str, context: BuildContext, model: str, *, scratch: bool,
                         dropout: float, attention_dropout: float) -> Any:
    """A pretrained text model (or, with ``scratch``, its random twin) checked against the task's texts and tokenizer."""
    text = load_pretrained(loader, pretrained, scratch=scratch, hidden_dropout_prob=dropout,
                           attention_probs_dropout_prob=attention_dropout)
    positions = getattr(text.config, "max_position_embeddings", None)
    if positions:
        check_text_positions(positions, context, model, pretrained)
    check_vocabulary(text.config.vocab_size, context, model, pretrained)
    return text


def check_text_positions(positions: int, context: BuildContext, model: str, pretrained: str) -> None:
    """A pretrained model has a fixed number of text positions: the task's text (and any prompt) must fit."""
    if context.max_text_length > positions:
        raise SpecError(
            f"{model}: {pretrained!r} has {positions} text positions, but the task's texts take up to "
            f"{context.max_text_length} tokens (max_text_length plus any prompt tokens); lower "
            f"task.options.max_text_length (e.g. --set task.options.max_text_length={positions}) or the prompt length."
        )


def check_vocabulary(vocab_size: int, context: BuildContext, model: str, pretrained: str) -> None:
    """The comparison's tokenizer must not produce ids beyond a pretrained model's embedding table."""
    tokenizer = context.tokenizer
    if tokenizer is not None and len(tokenizer) > vocab_size:
        raise SpecError(
            f"{model}: the tokenizer has {len(tokenizer)} tokens but {pretrained!r} embeds only {vocab_size}; "
            f"a pretrained model reads text with its own tokenizer: drop baseline.tokenizer (or set it to {pretrained!r})."
        )


def normalize_pixels(pixels_uint8: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float, normalised like ViLT's processor (mean 0.5, std 0.5)."""
    x = pixels_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def bert_from_config(
    context: BuildContext,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    dropout: float,
    attention_dropout: float,
    pooling: bool,
) -> nn.Module:
    """A randomly initialised transformers ``BertModel`` sized by a spec, over the comparison's tokenizer."""
    from transformers import BertConfig, BertModel

    return BertModel(
        BertConfig(
            vocab_size=len(context.tokenizer),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=attention_dropout,
            max_position_embeddings=max(context.max_text_length, 8),
            pad_token_id=context.tokenizer.pad_token_id,
        ),
        add_pooling_layer=pooling,
    )
