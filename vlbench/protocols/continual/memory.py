"""A bounded replay memory filled by reservoir sampling (Vitter 1985, Algorithm R)."""

from __future__ import annotations

from typing import Generic, Iterable, TypeVar

import numpy as np

__all__ = ["ReservoirMemory"]

T = TypeVar("T")


class ReservoirMemory(Generic[T]):
    """Keeps at most ``capacity`` items; after n offers each offered item is kept with probability capacity/n."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("replay memory capacity must be at least 1")
        self.capacity = capacity
        self.items: list[T] = []
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def offer(self, item: T) -> None:
        """Offer one item of the stream."""
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            slot = int(self._rng.integers(0, self.seen + 1))  # uniform over the seen + 1 items so far
            if slot < self.capacity:
                self.items[slot] = item
        self.seen += 1

    def extend(self, items: Iterable[T]) -> None:
        """Offer items in order."""
        for item in items:
            self.offer(item)

    def sample(self, size: int) -> list[T]:
        """``size`` items drawn uniformly with replacement (empty when the memory is)."""
        if not self.items:
            return []
        picks = self._rng.integers(0, len(self.items), size=size)
        return [self.items[int(i)] for i in picks]

    def __len__(self) -> int:
        return len(self.items)
