"""A dataset seen through row selections: the same images and tables, with some splits narrowed.

Every task type reads its rows through ``VLDataset.split(kind, split)``, so a view that narrows what that
call returns changes what any task trains or scores on without touching the task types themselves.
"""

from __future__ import annotations

from typing import Any, Callable

from vlbench.data.base import VLDataset

__all__ = ["RowSelector", "DatasetView"]

# (table kind, split name, rows) -> (indices of the rows to keep, facts to record about the choice)
RowSelector = Callable[[str, str, Any], "tuple[list[int], dict[str, Any]]"]


class DatasetView(VLDataset):
    """A ``VLDataset`` whose ``split`` returns only the rows a selector keeps (chosen lazily, once per table)."""

    def __init__(self, base: VLDataset, selectors: dict[str, RowSelector], info_key: str) -> None:
        super().__init__(name=base.name, fingerprint=base.fingerprint, images=base.images, tables=base.tables,
                         info=dict(base.info))
        self.base = base
        self._selectors = selectors
        self._info_key = info_key
        self._cache: dict[tuple[str, str], Any] = {}

    def split(self, kind: str, split: str):
        """One split of one table, narrowed when a selector is set for that split name."""
        rows = super().split(kind, split)
        selector = self._selectors.get(split)
        if selector is None:
            return rows
        key = (kind, split)
        if key not in self._cache:
            indices, facts = selector(kind, split, rows)
            self._cache[key] = rows.select(indices)
            self.info.setdefault(self._info_key, {})[f"{kind}/{split}"] = facts
        return self._cache[key]
