"""A captions table (``caption_id``, ``image_id``, ``caption``) as the official COCO captions annotation JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from datasets import Dataset, Features, Value

__all__ = ["CAPTION_FEATURES", "to_coco_captions", "write_coco_captions"]

# one row per caption, as in the COCO captions annotation file
CAPTION_FEATURES = Features({"caption_id": Value("int64"), "image_id": Value("int64"), "caption": Value("string")})


def to_coco_captions(table: Dataset, image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """A captions split as the official COCO captions annotation JSON (``images`` in first-seen order)."""
    cols = table.select_columns(["caption_id", "image_id", "caption"]).to_dict()
    order = list(dict.fromkeys(int(i) for i in (image_ids if image_ids is not None else cols["image_id"])))
    return {
        "info": {"description": "vlbench captions"},
        "licenses": [],
        "type": "captions",
        "images": [{"id": i, "file_name": f"{i}.png"} for i in order],
        "annotations": [
            {"image_id": int(i), "id": int(c), "caption": t}
            for c, i, t in zip(cols["caption_id"], cols["image_id"], cols["caption"])
        ],
    }


def write_coco_captions(table: Dataset, path: str | Path) -> Path:
    """Write ``to_coco_captions(table)`` atomically; returns the path."""
    from vlbench.io import atomic_write_json

    return atomic_write_json(Path(path), to_coco_captions(table), indent=None)
