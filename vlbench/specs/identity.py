"""A run's identity: the config hash over everything that can change its numbers, and nothing cosmetic."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vlbench.specs.schema import RunConfig, TrainingConfig

__all__ = ["config_hash", "COSMETIC_FIELDS"]

# fields that cannot change a run's numbers; they stay in the record but out of the hash
# (vlbench.results.aggregate leaves the same fields out when it compares records' configs)
COSMETIC_FIELDS: dict[str, tuple[str, ...]] = {
    "task": ("description", "reference_baseline", "training"),  # task.training is resolved into `training`
    "baseline": ("description", "tasks", "family", "training"),  # so is baseline.training
}


def _reads_prompt(model_type: str) -> bool:
    from vlbench.registry import MODELS

    return model_type in MODELS and bool(MODELS.entry(model_type).metadata.get("reads_prompt"))


def config_hash(config: RunConfig, extra: dict[str, Any] | None = None) -> str:
    """Stable short hash of everything that can change a run's numbers, and nothing cosmetic; seeds excluded.

    ``extra`` adds facts decided outside the config (data fingerprint, tokenizer); its ``precision``
    replaces ``training.precision`` so that ``auto`` is hashed as the precision the device actually used.
    """
    payload = config.model_dump(mode="json")
    for section, names in COSMETIC_FIELDS.items():
        payload[section] = {k: v for k, v in payload[section].items() if k not in names}
    payload["training"] = {k: v for k, v in payload["training"].items() if k not in TrainingConfig.unhashed}
    extra = dict(extra or {})
    if "precision" in extra:
        payload["training"]["precision"] = extra.pop("precision")
    if payload["training"].get("min_steps") is None:
        payload["training"].pop("min_steps", None)  # as for train_subset: runs without it keep their hashes
    if payload["task"].get("train_subset") is None:
        payload["task"].pop("train_subset", None)  # runs on the whole split keep the hashes they always had
    if not _reads_prompt(config.baseline.model):
        payload["task"].pop("prompt", None)  # a prompt template changes only the models that are prompted
    if extra:
        payload["extra"] = extra
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
