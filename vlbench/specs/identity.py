"""A run's identity: the config hash over everything that can change its numbers, and nothing cosmetic.

The hash reads the validated config with every default written out (see ``vlbench.tasks.preflight``), so an
explicitly written default, ``1e-2`` and ``0.01``, or ``DIR`` and ``DIR/`` give one identity. Where the caller
knows what a path holds (the data fingerprint, a digest of pretrained weights), the content stands for the
path: moving a folder keeps the identity, and new weights at the same path change it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from vlbench.specs.schema import RunConfig, TrainingConfig

__all__ = ["config_hash", "COSMETIC_FIELDS", "IDENTITY_VERSION"]

# fields that cannot change a run's numbers; they stay in the record but out of the hash
# (vlbench.results.aggregate leaves the same fields out when it compares records' configs)
COSMETIC_FIELDS: dict[str, tuple[str, ...]] = {
    # task.training is resolved into `training`, task.dataset into `dataset`, task.tokenizer into baseline.tokenizer;
    # task.metrics is a removed field that older records still hold
    "task": ("description", "reference_baseline", "training", "dataset", "tokenizer", "metrics"),
    "baseline": ("description", "tasks", "family", "training"),  # so is baseline.training
}
# 2: default-filled config, content identities instead of paths, data path left to the data fingerprint
IDENTITY_VERSION = 2


def _reads_prompt(model_type: str) -> bool:
    from vlbench.registry import MODELS

    return model_type in MODELS and bool(MODELS.entry(model_type).metadata.get("reads_prompt"))


def _put(payload: dict[str, Any], dotted: str, value: Any) -> None:
    """Replace the path or id at a dotted path of the config (a string) by its content identity; else leave it."""
    *parents, last = dotted.split(".")
    node: Any = payload
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and isinstance(node.get(last), str):
        node[last] = value


def _dataset_identity(dataset: str, data_fingerprint: Any) -> str:
    """``NAME:PATH`` as hashed: the name alone when the data fingerprint is hashed, else with a normalised path."""
    name, sep, path = dataset.partition(":")
    if data_fingerprint is not None or not (sep and path):
        return name
    return f"{name}:{os.path.normpath(path)}"


def config_hash(config: RunConfig, extra: dict[str, Any] | None = None) -> str:
    """Stable short hash of everything that can change a run's numbers, and nothing cosmetic; seeds excluded.

    ``extra`` adds facts decided outside the config: ``data`` (the dataset's content fingerprint, which then
    stands for the dataset's path), ``precision`` (replaces ``training.precision``, so that ``auto`` is hashed
    as the precision the device runs), and ``content`` ({dotted config path: content identity}, e.g.
    ``{"baseline.pretrained": "sha256:..."}``: the identity replaces the path or hub id it was read from).
    """
    payload = config.model_dump(mode="json")
    extra = dict(extra or {})
    content = extra.pop("content", None) or {}
    for dotted, identity in sorted(content.items()):
        _put(payload, dotted, identity)
    if content:  # every identity counts, also one whose settings are more than a path (an image part's block)
        payload["content"] = content
    for section, names in COSMETIC_FIELDS.items():
        payload[section] = {k: v for k, v in payload[section].items() if k not in names}
    payload["training"] = {k: v for k, v in payload["training"].items() if k not in TrainingConfig.unhashed}
    if "precision" in extra:
        payload["training"]["precision"] = extra.pop("precision")
    payload["dataset"] = _dataset_identity(config.dataset, extra.get("data"))
    if not _reads_prompt(config.baseline.model):
        payload["task"].pop("prompt", None)  # a prompt template changes only the models that are prompted
    if extra:
        payload["extra"] = extra
    payload["identity"] = IDENTITY_VERSION
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
