"""Features of a frozen backbone by example digest, in memory and in one safetensors file.

The cache itself knows nothing of models or training: a key is a digest of what a backbone reads of one
example (:func:`example_keys`), a row is any tensor of one fixed shape. Whole frozen encoders
(``vlbench.training.frozen``) and frozen pretrained parts (``vlbench.models.parts``) both store their
features here, so that both layers share one file format without the model layer importing training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Optional

import torch

__all__ = ["CACHE_VERSION", "FeatureCache", "example_keys"]

CACHE_VERSION = 1


def example_keys(batch: dict[str, torch.Tensor], modalities: Iterable[str]) -> list[bytes]:
    """One 20-byte digest per example of what a backbone with ``modalities`` reads."""
    modalities = tuple(modalities)
    n = int(batch["index"].shape[0]) if "index" in batch else int(next(iter(batch.values())).shape[0])
    digests = [hashlib.sha1() for _ in range(n)]
    if "text" in modalities and "input_ids" in batch:
        ids = batch["input_ids"].cpu()
        mask = batch["attention_mask"].cpu()
        types = batch.get("token_type_ids")
        types = types.cpu() if types is not None else torch.zeros_like(ids)
        for i, length in enumerate(mask.sum(1).tolist()):
            digests[i].update(ids[i, :length].numpy().tobytes())
            digests[i].update(types[i, :length].numpy().tobytes())
    if "image" in modalities and "pixel_values" in batch:
        pixels = batch["pixel_values"].detach().to("cpu", torch.float32).contiguous()
        for i in range(n):
            digests[i].update(pixels[i].numpy().tobytes())
    return [d.digest() for d in digests]


class FeatureCache:
    """Feature rows (one fixed shape) by example digest, optionally backed by one safetensors file."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path is not None else None
        self._index: dict[bytes, int] = {}
        self._rows: list[torch.Tensor] = []
        self._saved = 0
        self.loaded_from_disk = False
        if self.path is not None and self.path.is_file():
            self._load()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def add(self, key: bytes, feature: torch.Tensor) -> None:
        """Store one example's feature row (kept on the CPU in float32)."""
        if key not in self._index:
            self._index[key] = len(self._rows)
            self._rows.append(feature.detach().to("cpu", torch.float32))

    def gather(self, keys: list[bytes]) -> torch.Tensor:
        """(len(keys), *row shape) features, in the order of ``keys``."""
        return torch.stack([self._rows[self._index[k]] for k in keys])

    def _load(self) -> None:
        from safetensors.torch import load_file

        try:
            data = load_file(str(self.path))
        except Exception:  # noqa: BLE001  a torn or foreign file is recomputed, never trusted
            return
        keys, features = data.get("keys"), data.get("features")
        if keys is None or features is None or keys.shape[0] != features.shape[0]:
            return
        for key, row in zip(keys.numpy(), features):
            self.add(bytes(key), row)
        self._saved = len(self._rows)
        self.loaded_from_disk = True

    def save(self) -> Optional[Path]:
        """Write the cache atomically when it grew since it was loaded or last saved."""
        if self.path is None or len(self._rows) == self._saved or not self._rows:
            return self.path
        from safetensors.torch import save

        from vlbench.io import atomic_write_bytes

        keys = torch.tensor([list(k) for k in self._index], dtype=torch.uint8)
        order = torch.tensor(list(self._index.values()))
        features = torch.stack(self._rows)[order].contiguous()
        atomic_write_bytes(self.path, save({"keys": keys, "features": features}, metadata={"version": str(CACHE_VERSION)}))
        self._saved = len(self._rows)
        return self.path
