"""AdamW with decoupled weight decay (none on biases and normalisation weights) and warm-up then decay."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["param_groups", "make_optimizer", "make_scheduler"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and biases / LayerNorm / embeddings' norm parameters without decay."""
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("bias") or isinstance(module, norm_types) or param.ndim <= 1:
                no_decay.add(id(param))
    decay_params, plain_params = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (plain_params if id(param) in no_decay else decay_params).append(param)
    groups = []
    if decay_params:
        groups.append({"params": decay_params, "weight_decay": weight_decay})
    if plain_params:
        groups.append({"params": plain_params, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters."""
    groups = param_groups(model, weight_decay)
    if not groups:
        from vlbench.errors import TrainingError

        raise TrainingError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    warmup = int(round(total_steps * warmup_ratio))
    return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
