"""Fixed seeds for python, numpy, torch (CPU and CUDA) and data-loading order."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "data_generator"]


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
