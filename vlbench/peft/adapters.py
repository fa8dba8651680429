"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021) for any encoder with BERT-style layer names.

Neither ``peft`` nor the ``adapters`` library covers ViLT (and ``adapters`` pins its own transformers), so
this is a small implementation: an adapter ``x + up(act(down(x)))`` with ``up`` initialised to zero (the
adapted model starts as the original one) is applied to the output of a sub-layer's output projection,
before the residual connection and layer norm, which is where Houlsby places it. Houlsby adapts the
attention output and the feed-forward output of every layer and trains the layer norms; Pfeiffer adapts
the feed-forward output only.
"""

from __future__ import annotations

import re
from typing import Optional

import torch
from torch import nn

from vlbench.errors import SpecError

__all__ = ["BottleneckAdapter", "AdaptedLinear", "default_adapter_targets", "add_adapters"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}
# BERT, ViLT and vlbench's own layers: "...layer.N.attention.output.dense" and "...layer.N.output.dense"
_ATTENTION_OUT = r".*attention\.output\.dense"
_FFN_OUT = r"(.*\.)?output\.dense"


class BottleneckAdapter(nn.Module):
    """``x + up(act(down(x)))``; zero-initialised ``up`` makes it the identity at the start."""

    def __init__(self, hidden: int, bottleneck: int, non_linearity: str = "relu") -> None:
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = _ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck."""
        return x + self.up(self.act(self.down(x)))


class AdaptedLinear(nn.Module):
    """A linear layer followed by an adapter; the original layer is kept as ``base`` (frozen by the caller)."""

    def __init__(self, base: nn.Linear, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapter applied to the projection's output."""
        return self.adapter(self.base(x))


def default_adapter_targets(variant: str) -> list[str]:
    """Regular expressions of the layers a variant adapts."""
    return [_ATTENTION_OUT, _FFN_OUT] if variant == "houlsby" else [_FFN_OUT]


def _is_target(name: str, patterns: list[re.Pattern], variant: str, custom: bool) -> bool:
    if not any(p.fullmatch(name) for p in patterns):
        return False
    # "output.dense" also matches the attention output; Pfeiffer adapts only the feed-forward block
    if not custom and variant == "pfeiffer" and re.fullmatch(_ATTENTION_OUT, name):
        return False
    return True


def add_adapters(module: nn.Module, *, variant: str, reduction_factor: int, non_linearity: str,
                 targets: Optional[list[str]] = None) -> list[str]:
    """Wrap every targeted ``nn.Linear`` of ``module`` with an adapter; returns the adapted layer names."""
    custom = targets is not None
    patterns = [re.compile(t) for t in (targets if custom else default_adapter_targets(variant))]
    chosen = [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and _is_target(n, patterns, variant, custom)]
    if not chosen:
        linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        sample = ", ".join(linears[:6]) + (" ..." if len(linears) > 6 else "")
        raise SpecError(
            f"peft adapter: no linear layer of {type(module).__name__} matches {[p.pattern for p in patterns]}; "
            f"set peft.targets to regular expressions of its layer names (e.g. {sample or 'none found'})."
        )
    for name in chosen:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        base = getattr(parent, attr)
        width = base.out_features
        adapter = BottleneckAdapter(width, max(1, width // reduction_factor), non_linearity)
        adapter.to(device=base.weight.device, dtype=base.weight.dtype)
        setattr(parent, attr, AdaptedLinear(base, adapter))
    return chosen
