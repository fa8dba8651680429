"""The ``peft:`` block of a baseline spec: one validated settings class per method.

Every method freezes the encoder except what the method adds or names; the task head (everything the
task type puts around the encoder) always trains.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vlbench.errors import SpecError
from vlbench.registry import did_you_mean
from vlbench.specs.schema import SettingsModel

__all__ = [
    "LoraSpec",
    "AdapterSpec",
    "BitFitSpec",
    "PromptSpec",
    "FrozenSpec",
    "PeftSpec",
    "METHODS",
    "parse_peft",
    "complete_peft",
]


class _Method(SettingsModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    trainable: list[str] = Field(
        default_factory=list,
        description="extra encoder parameters that train, by name substring (e.g. [pooler]); the task head always trains",
    )


class LoraSpec(_Method):
    """LoRA (Hu et al. 2021) through ``peft``: low-rank updates of the targeted linear layers."""

    method: Literal["lora"]
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Union[list[str], str] = Field(
        default_factory=lambda: ["query", "value"],
        description="module-name suffixes (a list) or one regular expression (a string), as in peft's LoraConfig",
    )


class AdapterSpec(_Method):
    """Bottleneck adapters: Houlsby (after attention and FFN, layer norms train) or Pfeiffer (after FFN only)."""

    method: Literal["adapter"]
    variant: Literal["houlsby", "pfeiffer"] = "pfeiffer"
    reduction_factor: int = Field(16, ge=1, description="bottleneck width = hidden size / reduction_factor")
    non_linearity: Literal["relu", "gelu", "swish"] = "relu"
    targets: Optional[list[str]] = Field(
        None, description="regular expressions (full match) of the linear layers to adapt; default by variant"
    )
    train_layer_norm: Optional[bool] = Field(None, description="default: true for houlsby, false for pfeiffer")


class BitFitSpec(_Method):
    """BitFit (Ben Zaken et al. 2022): only the bias terms of the encoder train."""

    method: Literal["bitfit"]


class PromptSpec(_Method):
    """Prompt tuning (Lester et al. 2021) with peft's ``PromptEmbedding``: virtual tokens after [CLS]."""

    method: Literal["prompt"]
    num_virtual_tokens: int = Field(10, ge=1)
    init: Literal["random", "sample_vocab"] = Field("sample_vocab", description="peft's prompt_tuning_init")


class FrozenSpec(_Method):
    """Frozen backbone (linear probing): only the task head trains, on features computed once and cached."""

    method: Literal["frozen"]
    cache_features: bool = Field(True, description="compute pooled features once per distinct input and reuse them")


PeftSpec = Annotated[Union[LoraSpec, AdapterSpec, BitFitSpec, PromptSpec, FrozenSpec], Field(discriminator="method")]
METHODS = ("lora", "adapter", "bitfit", "prompt", "frozen")
_ADAPTER: TypeAdapter = TypeAdapter(PeftSpec)


def parse_peft(raw: Optional[dict[str, Any]], source: str) -> Optional[BaseModel]:
    """Validate a spec's ``peft:`` block (None stays None); errors name the spec, the field and the fix."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: field 'peft': expected a mapping like {{method: lora, r: 8}}, got {raw!r}.")
    method = raw.get("method")
    if method not in METHODS:
        hint = did_you_mean(str(method), list(METHODS)) if method else ""
        raise SpecError(f"{source}: field 'peft.method': {method!r} is not a PEFT method.{hint} Use one of: {', '.join(METHODS)}.")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())[1:]) or "method"
        raise SpecError(f"{source}: field 'peft.{loc}': {first.get('msg', 'invalid')}") from exc


def complete_peft(raw: Optional[dict[str, Any]], source: str) -> Optional[dict[str, Any]]:
    """A spec's ``peft:`` block validated, with every default written out (what a run's config hash reads)."""
    parsed = parse_peft(raw, source)
    return parsed.model_dump(mode="json") if parsed is not None else None
