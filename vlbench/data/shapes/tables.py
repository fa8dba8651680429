"""Plug-in point for per-task tables derived from a split's scenes (vqa now; captions, retrieval, vmt later).

A table maker turns one split's scenes into an HF ``Dataset``. Each maker gets its own random stream,
seeded by (seed, split, table kind), so adding a new table never changes the bytes of existing ones;
its ``version`` enters the cache key, so changing a maker rebuilds the cache.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from datasets import Dataset

from vlbench.data.shapes.world import Scene

if TYPE_CHECKING:
    from vlbench.data.shapes.build import ShapesOptions

__all__ = ["SplitScenes", "TableMaker", "TABLE_MAKERS", "register_table", "table_rng"]


@dataclass(frozen=True)
class SplitScenes:
    """One split's scenes with the image id of each (ids are unique across splits)."""

    split: str
    scenes: Sequence[Scene]
    image_ids: Sequence[int]


@dataclass(frozen=True)
class TableMaker:
    """A registered table: ``make(split_scenes, options, rng) -> Dataset`` plus a version for the cache key."""

    kind: str
    version: str
    make: Callable[[SplitScenes, "ShapesOptions", np.random.Generator], Dataset]


TABLE_MAKERS: dict[str, TableMaker] = {}


def register_table(kind: str, version: str) -> Callable[[Callable], Callable]:
    """Decorator adding a table maker under ``kind`` (e.g. ``"vqa"``, later ``"captions"``)."""

    def decorator(fn: Callable) -> Callable:
        """Record ``fn`` as the maker of ``kind``."""
        TABLE_MAKERS[kind] = TableMaker(kind, version, fn)
        return fn

    return decorator


def table_rng(seed: int, split_index: int, kind: str) -> np.random.Generator:
    """The random stream of one table in one split; crc32 keeps it stable across Python runs."""
    return np.random.default_rng([seed, split_index, 1000 + zlib.crc32(kind.encode())])
