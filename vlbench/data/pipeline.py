"""The data path every task type shares: split roles, column checks, tokenization, token trimming, pixels.

A task reads one table of a built dataset under three roles (train / validation / test), checks up
front that the columns it needs are there (so a wrong dataset fails before any training), tokenizes
each role once, and builds batches whose token tensors are trimmed to the longest item and whose
pixels come from the model's image transform through :func:`vlbench.data.images.pixel_batch`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from vlbench.data.images import pixel_batch
from vlbench.errors import DataError

__all__ = ["ROLES", "TEXT_KEYS", "split_roles", "require_columns", "encode_texts", "trim_tokens", "image_inputs"]

ROLES: tuple[str, ...] = ("train", "validation", "test")
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def split_roles(spec: Any) -> dict[str, str]:
    """{role: dataset split name} from a task spec's ``splits`` block."""
    return {"train": spec.splits.train, "validation": spec.splits.validation, "test": spec.splits.test}


def require_columns(dataset: Any, table: str, split: str, columns: Sequence[str], hint: str = "") -> Any:
    """The split of ``table``, or one DataError naming the dataset, table, split and every missing column."""
    rows = dataset.split(table, split)
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        fix = f" {hint}" if hint else ""
        raise DataError(
            f"dataset {dataset.name!r}, table {table!r}, split {split!r} has no column(s) {', '.join(missing)} "
            f"(it has: {', '.join(rows.column_names) or 'none'}).{fix}"
        )
    return rows


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and token type ids padded to ``max_length`` (trimmed per batch later)."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "token_type_ids": enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])),
    }


def trim_tokens(encoded: dict[str, torch.Tensor], index: torch.Tensor, length: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Rows ``index`` of the encoded texts, cut to the longest of them (at least one token)."""
    mask = encoded["attention_mask"].index_select(0, index)
    length = length or max(int(mask.sum(1).max()) if mask.numel() else 1, 1)
    out = {"attention_mask": mask[:, :length]}
    for key in ("input_ids", "token_type_ids"):
        out[key] = encoded[key].index_select(0, index)[:, :length]
    return {k: out[k] for k in TEXT_KEYS}


def image_inputs(task: Any, image_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """``pixel_values`` (and ``pixel_mask`` when the transform pads) for ``image_ids``, via the model's transform."""
    return pixel_batch(task.dataset.images, [int(i) for i in image_ids], getattr(task, "image_transform", None),
                       task.options.image_size)
