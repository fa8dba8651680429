"""Apply a ``peft:`` method to a task-wrapped model: freeze the encoder, add or unfreeze what the method trains.

Applied after ``task.wrap`` so that the task head (every parameter outside the wrapped model's
``encoder``) always trains, whatever the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import Encoder
from vlbench.peft.config import AdapterSpec, BitFitSpec, FrozenSpec, LoraSpec, PromptSpec

__all__ = ["PeftSummary", "encoder_slot", "apply_peft", "trained_state"]


@dataclass
class PeftSummary:
    """What a method did: its name, the layers it adapted, and the encoder parameters left trainable."""

    method: str
    adapted: list[str] = field(default_factory=list)
    trainable_encoder_parameters: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """Compact form for run records."""
        return {"method": self.method, "adapted_layers": len(self.adapted),
                "trainable_encoder_tensors": len(self.trainable_encoder_parameters)}


def encoder_slot(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent, attribute) of the encoder inside a task-wrapped model: ``model.encoder`` by convention."""
    if isinstance(getattr(model, "encoder", None), nn.Module):
        return model, "encoder"
    for name, child in model.named_children():
        if isinstance(child, Encoder):
            return model, name
    raise SpecError(
        f"peft: cannot find the encoder inside {type(model).__name__}; a task's wrap() must keep it as `.encoder`."
    )


def _keep_frozen_norm_statistics(module: nn.Module) -> None:
    # a frozen BatchNorm would still update its running statistics in train mode: the backbone would
    # drift and an adapter-only checkpoint could not reproduce the predictions, so it runs in eval mode
    def force_eval(norm: nn.Module, _inputs: Any) -> None:
        norm.training = False

    for norm in module.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in norm.parameters(recurse=False)
        ):
            norm.register_forward_pre_hook(force_eval)


def _lora(encoder: nn.Module, spec: LoraSpec) -> list[str]:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=spec.target_modules, bias="none")
    try:
        inject_adapter_in_model(config, encoder)
    except ValueError as exc:
        linears = [n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, nn.Linear)]
        names = ", ".join(sorted(set(linears))[:12])
        raise SpecError(
            f"peft lora: target_modules {spec.target_modules!r} match no layer of {type(encoder).__name__} "
            f"({str(exc).splitlines()[0][:120]}); its linear layers end in: {names}."
        ) from exc
    adapted = sorted({n.rsplit(".lora_", 1)[0] for n, _ in encoder.named_parameters() if ".lora_" in n})
    for name, param in encoder.named_parameters():
        param.requires_grad = "lora_" in name
    return adapted


def _adapter(encoder: nn.Module, spec: AdapterSpec) -> list[str]:
    from vlbench.peft.adapters import add_adapters

    adapted = add_adapters(encoder, variant=spec.variant, reduction_factor=spec.reduction_factor,
                           non_linearity=spec.non_linearity, targets=spec.targets)
    train_norms = spec.train_layer_norm if spec.train_layer_norm is not None else spec.variant == "houlsby"
    for module in encoder.modules():
        if isinstance(module, nn.LayerNorm) and train_norms:
            module.requires_grad_(True)
    for name, param in encoder.named_parameters():
        if ".adapter." in f".{name}":
            param.requires_grad = True
    return adapted


def apply_peft(model: nn.Module, spec: Any) -> PeftSummary:
    """Freeze ``model``'s encoder per ``spec`` (a validated peft settings object); the rest of ``model`` trains."""
    parent, attr = encoder_slot(model)
    encoder: nn.Module = getattr(parent, attr)
    encoder.requires_grad_(False)
    adapted: list[str] = []
    if isinstance(spec, LoraSpec):
        adapted = _lora(encoder, spec)
    elif isinstance(spec, AdapterSpec):
        adapted = _adapter(encoder, spec)
    elif isinstance(spec, BitFitSpec):
        for name, param in encoder.named_parameters():
            param.requires_grad = name.endswith("bias")
    elif isinstance(spec, PromptSpec):
        from vlbench.peft.prompt import PromptTunedEncoder

        encoder = PromptTunedEncoder(encoder, spec.num_virtual_tokens, spec.init)
        encoder.prompt.requires_grad_(True)
        setattr(parent, attr, encoder)
        adapted = ["prompt"]
    elif not isinstance(spec, FrozenSpec):
        raise SpecError(f"peft: unsupported method {getattr(spec, 'method', spec)!r}.")
    if spec.trainable:
        matched = False
        for name, param in encoder.named_parameters():
            if any(part in name for part in spec.trainable):
                param.requires_grad, matched = True, True
        if not matched:
            raise SpecError(f"peft.trainable {spec.trainable!r}: no encoder parameter name contains any of these.")
    for module in encoder.modules():
        if getattr(module, "stays_frozen", False):  # a frozen pretrained part (cached features) never trains
            module.requires_grad_(False)
    encoder_ids = {id(p) for p in encoder.parameters()}
    for param in model.parameters():
        if id(param) not in encoder_ids:
            param.requires_grad = True  # the task head always trains
    _keep_frozen_norm_statistics(encoder)
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    return PeftSummary(spec.method, adapted, trainable)


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained weights of a PEFT model: trainable parameters, plus running statistics of norms that train."""
    state: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            state[name] = param.detach().to("cpu").contiguous().clone()
    for module_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(
            p.requires_grad for p in module.parameters(recurse=False)
        ):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    key = f"{module_name}.{buffer_name}" if module_name else buffer_name
                    state[key] = buffer.detach().to("cpu").contiguous().clone()
    return state
