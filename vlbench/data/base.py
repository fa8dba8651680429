"""What every dataset builder returns: images behind one store, and per-task tables as HF datasets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from datasets import DatasetDict

from vlbench.errors import DataError

__all__ = ["ImageStore", "ArrayImageStore", "VLDataset", "DatasetBuilder", "default_cache_dir"]


def default_cache_dir() -> Path:
    """Where built and converted datasets are cached: ``$VLBENCH_CACHE`` or ``~/.cache/vlbench``."""
    env = os.environ.get("VLBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vlbench"


class ImageStore(Protocol):
    """Images addressed by integer image id, returned as uint8 tensors of shape (B, H, W, 3)."""

    image_size: int

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Pixels for ``image_ids`` in order."""
        ...

    def ids(self) -> list[int]:
        """Every image id in the store."""
        ...


class ArrayImageStore:
    """An in-memory store over one uint8 array (N, H, W, 3) and the image id of each row."""

    def __init__(self, pixels: np.ndarray | torch.Tensor, image_ids: Sequence[int]) -> None:
        tensor = torch.as_tensor(pixels)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
            raise DataError(f"image array must be uint8 (N, H, W, 3), got {tuple(tensor.shape)} {tensor.dtype}")
        if tensor.shape[0] != len(image_ids):
            raise DataError(f"{tensor.shape[0]} images but {len(image_ids)} image ids")
        self.pixels = tensor
        self.image_size = int(tensor.shape[1])
        self._row = {int(i): r for r, i in enumerate(image_ids)}
        if len(self._row) != len(image_ids):
            raise DataError("image ids are not unique")

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Pixels for ``image_ids`` in order."""
        try:
            rows = torch.tensor([self._row[int(i)] for i in image_ids], dtype=torch.long)
        except KeyError as exc:
            raise DataError(f"image id {exc.args[0]} is not in the image store") from None
        return self.pixels.index_select(0, rows)

    def ids(self) -> list[int]:
        """Every image id in the store."""
        return list(self._row)


@dataclass
class VLDataset:
    """A built dataset: a fingerprint for records, an image store and one DatasetDict per table kind.

    Table kinds: ``"vqa"`` (question_id, image_id, question, question_type, answer_type, answers,
    answer_confidence, multiple_choice_answer); later issues add ``"captions"``, ``"retrieval"``, ``"vmt"``.
    """

    name: str
    fingerprint: str
    images: ImageStore
    tables: dict[str, DatasetDict]
    info: dict[str, Any] = field(default_factory=dict)

    def table(self, kind: str) -> DatasetDict:
        """The DatasetDict for ``kind``; a dataset without it raises a clear error."""
        if kind not in self.tables:
            have = ", ".join(sorted(self.tables)) or "none"
            raise DataError(f"dataset {self.name!r} has no {kind!r} data (it has: {have}).")
        return self.tables[kind]

    def split(self, kind: str, split: str):
        """One split of one table, with a clear error when the split is missing."""
        table = self.table(kind)
        if split not in table:
            raise DataError(f"dataset {self.name!r} has no split {split!r} for {kind!r} (it has: {', '.join(table)}).")
        return table[split]


class DatasetBuilder(Protocol):
    """Signature of a registered dataset: ``builder(path, options, cache_dir, quiet) -> VLDataset``."""

    def __call__(self, path: str | None, options: dict[str, Any], cache_dir: Any, quiet: bool = False) -> VLDataset:
        ...
