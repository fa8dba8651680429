"""Continual-learning metrics from an accuracy matrix (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

``R[i][j]`` is the test score on stage ``j`` after training on stages ``0..i`` (T x T), and ``b[j]`` the
score of the randomly initialised model on stage ``j``:

* average accuracy  ACC = 1/T * sum_j R[T-1][j]
* backward transfer BWT = 1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j])
* forward transfer  FWT = 1/(T-1) * sum_{j>0} (R[j-1][j] - b[j])
* forgetting        F   = 1/(T-1) * sum_{j<T-1} max_{l<T-1} (R[l][j] - R[T-1][j])   (l >= j)
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["average_accuracy", "backward_transfer", "forward_transfer", "forgetting", "summarize"]


def _square(matrix: Sequence[Sequence[float]]) -> int:
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError("the accuracy matrix must be square (one row per stage trained, one column per stage)")
    return size


def average_accuracy(matrix: Sequence[Sequence[float]]) -> float:
    """Mean of the last row: every stage's score once training has ended."""
    size = _square(matrix)
    return sum(matrix[-1]) / size


def backward_transfer(matrix: Sequence[Sequence[float]]) -> Optional[float]:
    """How learning later stages changed earlier ones (negative: forgetting); None for one stage."""
    size = _square(matrix)
    if size < 2:
        return None
    return sum(matrix[-1][j] - matrix[j][j] for j in range(size - 1)) / (size - 1)


def forward_transfer(matrix: Sequence[Sequence[float]], random_init: Sequence[float]) -> Optional[float]:
    """How earlier stages helped a stage before it was trained, against the random model's score."""
    size = _square(matrix)
    if len(random_init) != size:
        raise ValueError("one random-initialisation score per stage is needed")
    if size < 2:
        return None
    return sum(matrix[j - 1][j] - random_init[j] for j in range(1, size)) / (size - 1)


def forgetting(matrix: Sequence[Sequence[float]]) -> Optional[float]:
    """Mean drop from each earlier stage's best score to its final one; None for one stage."""
    size = _square(matrix)
    if size < 2:
        return None
    drops = [max(matrix[l][j] for l in range(j, size - 1)) - matrix[-1][j] for j in range(size - 1)]
    return sum(drops) / (size - 1)


def summarize(matrix: Sequence[Sequence[float]], random_init: Sequence[float]) -> dict[str, Optional[float]]:
    """ACC, BWT, FWT and forgetting of one accuracy matrix."""
    return {
        "average_accuracy": average_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forward_transfer": forward_transfer(matrix, random_init),
        "forgetting": forgetting(matrix),
    }
