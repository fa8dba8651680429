"""Frozen backbone with cached features: the encoder runs once per distinct input, then only heads train.

Features are keyed by a digest of what the backbone reads of one example (its question tokens and/or
its image pixels), so a backbone that reads only images runs once per image, not once per question,
and a text encoder once per distinct question. The cache of one backbone lives in memory and on disk
(``<cache>/features/<key>.safetensors``); its key covers the model type, its settings, the pretrained
weights, the tokenizer, the data fingerprint and the task options, and the seed only when the backbone
is built from config (random weights differ per seed; pretrained ones do not), so a sweep over heads and
seeds reuses one computation.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Optional

import torch
from torch import nn

from vlbench.data.feature_cache import CACHE_VERSION, FeatureCache, example_keys
from vlbench.models.base import EncoderOutput

__all__ = ["CACHE_VERSION", "FeatureCache", "example_keys", "CachedFeatureEncoder", "feature_cache_key", "warm_cache"]


class CachedFeatureEncoder(nn.Module):
    """A frozen encoder whose pooled features come from a :class:`FeatureCache` (computed on first sight)."""

    def __init__(self, backbone: nn.Module, cache: FeatureCache) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.cache = cache
        self.hidden_size = backbone.hidden_size
        self.modalities = tuple(backbone.modalities)
        self.computed = 0
        # set by vlbench.robustness while it scores corrupted or attacked inputs: compute, never read or fill the cache
        self.bypass_cache = False

    def train(self, mode: bool = True) -> "CachedFeatureEncoder":
        """The backbone stays in eval mode: its features must not depend on dropout or batch statistics."""
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def ensure(self, batch: dict[str, torch.Tensor]) -> list[bytes]:
        """Compute and cache the features of the batch's examples not cached yet; returns their keys."""
        keys = example_keys(batch, self.modalities)
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.cache:
                first.setdefault(key, i)
        if first:
            rows = torch.tensor(list(first.values()), device=batch["input_ids"].device if "input_ids" in batch else None)
            subset = {k: v.index_select(0, rows.to(v.device)) for k, v in batch.items() if torch.is_tensor(v) and v.dim() > 0}
            pooled = self.backbone(subset).pooled
            for j, key in enumerate(first):
                self.cache.add(key, pooled[j])
            self.computed += len(first)
        return keys

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        """Cached pooled features (no sequence: heads that need token features cannot use the cache)."""
        if self.bypass_cache:  # gradients reach the inputs (the backbone's weights stay frozen)
            return EncoderOutput(pooled=self.backbone(batch).pooled)
        keys = self.ensure(batch)
        device = next(iter(batch.values())).device
        return EncoderOutput(pooled=self.cache.gather(keys).to(device))


def feature_cache_key(*, model: str, config: dict[str, Any], pretrained: Optional[str], seed: int,
                      tokenizer: Optional[str], data_fingerprint: str, task: dict[str, Any],
                      content: Optional[dict[str, str]] = None) -> str:
    """Digest naming one backbone's cache file; the seed counts only for backbones built from config.

    ``content`` holds the content identities of the pretrained files (see ``content_identities``): the key
    follows what the weights hold, so new weights at the same path are never served stale features.
    """
    payload = {
        "version": CACHE_VERSION,
        "model": model,
        "config": config,
        "pretrained": bool(pretrained),
        "content": content or {},
        "seed": None if pretrained else seed,
        "tokenizer": tokenizer,
        "data": data_fingerprint,
        "task": task,
        "torch": torch.__version__,
    }
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def warm_cache(encoder: CachedFeatureEncoder, task: Any, splits: Iterable[str], batch_size: int, device: torch.device,
               progress: Any = None, label: str = "features") -> int:
    """Run the backbone once over every split (distinct inputs only); returns how many features it computed."""
    before = encoder.computed
    encoder.to(device)
    splits = list(splits)
    total = sum(-(-task.num_examples(s) // batch_size) for s in splits)
    bar = progress.add_task(label, total=total) if progress is not None else None
    for split in splits:
        for batch in task.batches(split, batch_size, encoder.modalities):
            encoder.ensure({k: v.to(device, non_blocking=True) for k, v in batch.items()})
            if bar is not None:
                progress.update(bar, advance=1)
    if bar is not None:
        progress.remove_task(bar)
    return encoder.computed - before
