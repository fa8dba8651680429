"""Fixed seeds for python, numpy, torch (CPU and CUDA) and data-loading order, and their saved states."""

from __future__ import annotations

import base64
import os
import random
from typing import Any, Optional

import numpy as np
import torch

__all__ = ["seed_everything", "data_generator", "rng_state", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed every random number generator a run touches."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def data_generator(seed: int) -> torch.Generator:
    """A dedicated generator for shuffling, so data order does not depend on model initialisation."""
    generator = torch.Generator()
    generator.manual_seed(seed + 1_000_003)
    return generator


def _tensor_to_text(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _text_to_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def rng_state(generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Every random state a run depends on, as JSON-ready values (python, numpy, torch, cuda, data order)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _tensor_to_text(torch.get_rng_state()),
        "cuda": [_tensor_to_text(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["data"] = _tensor_to_text(generator.get_state())
    return state


def set_rng_state(state: dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    """Restore what :func:`rng_state` captured (the CUDA states only where as many devices are visible)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_text_to_tensor(state["torch"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([_text_to_tensor(s) for s in cuda])
    if generator is not None and "data" in state:
        generator.set_state(_text_to_tensor(state["data"]))
