"""Elastic weight consolidation (Kirkpatrick et al. 2017): a diagonal-Fisher quadratic penalty.

After a stage, the empirical diagonal Fisher ``F_k = 1/N sum_n (d L_n / d theta_k)^2`` is estimated from
per-example gradients of the task loss on that stage's training data, and the anchor ``theta*`` is the
trained weights. Later stages add ``lambda/2 * sum_stages sum_k F_k (theta_k - theta*_k)^2`` to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

__all__ = ["Anchor", "diagonal_fisher", "ewc_penalty"]


@dataclass
class Anchor:
    """One finished stage: its Fisher diagonal and the weights it ended with."""

    fisher: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]


def diagonal_fisher(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean squared per-example gradient of every trainable parameter (each batch holds one example)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()  # no dropout noise in the curvature estimate
    count = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if count == 0:
        raise ValueError("the Fisher estimate needs at least one example")
    return {name: value / count for name, value in fisher.items()}


def ewc_penalty(model: nn.Module, anchors: list[Anchor], strength: float) -> torch.Tensor:
    """``strength/2 * sum over anchors and parameters of F * (theta - theta*)^2``."""
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    named = dict(model.named_parameters())
    for anchor in anchors:
        for name, fisher in anchor.fisher.items():
            param = named[name]
            total = total + (fisher.to(device) * (param - anchor.weights[name].to(device)) ** 2).sum()
    return 0.5 * strength * total
