"""Chance: uniformly random scores, drawn from the run's seed, reading neither text nor image."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from vlbench.models.base import BuildContext, EncoderConfig, FittedModel

__all__ = ["RandomScores"]


class RandomScores(FittedModel):
    """Scores every candidate with an independent uniform draw; a retrieval table's chance row."""

    modalities = ()

    def __init__(self, seed: int) -> None:
        self.seed = seed

    @classmethod
    def from_spec(cls, config: EncoderConfig, pretrained: Optional[str], context: BuildContext) -> "RandomScores":
        """The draw's seed comes from the numpy state the runner seeded for this run."""
        return cls(int(np.random.randint(0, 2**31 - 1)))

    def fit(self, rows: list[dict[str, Any]]) -> None:
        """Nothing to learn."""

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        """One uniform score per row."""
        return np.random.default_rng(self.seed).random(len(rows)).tolist()

    def similarity(self, n_images: int, n_texts: int) -> np.ndarray:
        """A uniform (images x texts) score matrix; ties have probability zero."""
        return np.random.default_rng(self.seed).random((n_images, n_texts))
