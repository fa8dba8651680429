"""``hf:ID_OR_DIR`` — any Hugging Face dataset (hub id, or a local ``save_to_disk`` folder) through a column mapping.

The ``columns`` option maps vlbench roles to the dataset's column names; the roles present decide
which tables are made:

* ``question`` + ``answers`` -> a ``vqa`` table (``answers``: a list of strings, a list of
  ``{"answer": ...}`` records as in VQA v2, or one string; optional ``question_id``, ``question_type``,
  ``answer_type``, ``multiple_choice_answer`` (default: the most frequent answer));
* ``caption`` (a string or a list of strings) -> a ``captions`` table (one row per caption);
* ``source`` + ``target`` -> a ``vmt`` table.

``image`` names an ``Image()`` column (kept as encoded bytes in the Arrow table and decoded on
``load``); ``image_id`` names a column identifying images shared by several rows (otherwise every
row has its own image). ``splits`` maps vlbench split names to the dataset's (default: its own names).
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from pydantic import Field, field_validator

from vlbench.data.base import VLDataset
from vlbench.data.coco_format import CAPTION_FEATURES
from vlbench.data.files.common import FileDataOptions, parse_data_options
from vlbench.data.files.multi30k import VMT_FEATURES
from vlbench.data.files.store import SKIPPED_SHOWN, check_image_bytes
from vlbench.data.integrity import source_fingerprint
from vlbench.errors import DataError

__all__ = ["HFOptions", "ArrowImageStore", "build_hf", "ROLES"]

ROLES = ("image", "image_id", "question", "answers", "question_id", "question_type", "answer_type",
         "multiple_choice_answer", "caption", "source", "target")
# image ids made from (split, row) when the dataset has no image id column
_ROW_STRIDE = 10_000_000


class HFOptions(FileDataOptions):
    """Options of ``hf``."""

    columns: dict[str, str] = Field(default_factory=dict, description=f"vlbench role -> column ({', '.join(ROLES)})")
    splits: dict[str, str] = Field(default_factory=dict, description="vlbench split -> dataset split (default: same names)")
    config_name: Optional[str] = Field(None, description="the dataset's configuration (hub datasets with several)")

    @field_validator("columns")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
        return value


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {where} ({type(exc).__name__}: {exc}).") from None


class ArrowImageStore:
    """Images kept encoded in Arrow tables (an HF ``Image`` column), decoded on ``load``."""

    image_size = None

    def __init__(self, tables: Mapping[str, Dataset], column: str, rows: Mapping[int, tuple[str, int]], source: str) -> None:
        from datasets import Image

        self.tables = {s: t.select_columns([column]).cast_column(column, Image(decode=False)) for s, t in tables.items()}
        self.column, self.rows, self.source = column, dict(rows), source

    def _bytes(self, image_id: int) -> tuple[bytes, str]:
        try:
            split, row = self.rows[int(image_id)]
        except KeyError:
            raise DataError(f"image id {image_id} is not in the image store of {self.source!r}") from None
        cell = self.tables[split][row][self.column]
        where = f"{self.source} split {split!r} row {row}"
        if cell is None:
            raise DataError(f"no image at {where}.")
        data = cell.get("bytes")
        if data is None and cell.get("path"):
            data = Path(cell["path"]).read_bytes()
        return data, where

    def load(self, image_id: int) -> np.ndarray:
        """Decoded uint8 (H, W, 3) pixels of one image."""
        return _decode(*self._bytes(image_id))

    def get(self, image_ids: list[int]) -> torch.Tensor:
        """Pixels of equal-size images as (B, H, W, 3)."""
        images = [self.load(i) for i in image_ids]
        if len({im.shape for im in images}) > 1:
            raise DataError("images of different sizes cannot be stacked; read them through vlbench.data.images.pixel_batch.")
        return torch.as_tensor(np.stack(images))

    def ids(self) -> list[int]:
        """Every image id in the store."""
        return list(self.rows)


def _load(path: str, opts: HFOptions) -> DatasetDict:
    import datasets

    local = Path(path).expanduser()
    try:
        if local.exists():
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(path, opts.config_name)
    except FileNotFoundError as exc:
        raise DataError(f"hf: {path!r} is neither a save_to_disk folder nor a reachable hub dataset ({exc}).") from None
    except Exception as exc:  # noqa: BLE001  hub/network/format errors from datasets have no common base class
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"hf: cannot load {path!r}: {first[:200]} (offline? save it with save_to_disk on a machine "
                        "with network and pass the folder).") from None
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def _answers(cell: Any) -> list[str]:
    if isinstance(cell, str):
        return [cell]
    if isinstance(cell, dict) and "answer" in cell:  # a columnar list of records
        return [str(a) for a in cell["answer"]]
    return [str(a["answer"]) if isinstance(a, dict) else str(a) for a in (cell or [])]


def _tables(split: str, index: int, ds: Dataset, cols: dict[str, str], image_ids: list[int]) -> dict[str, Dataset]:
    from vlbench.data.vqa_format import VQA_FEATURES

    out: dict[str, Dataset] = {}
    n = ds.num_rows
    get = lambda role: list(ds[cols[role]]) if role in cols else None  # noqa: E731
    if "question" in cols and "answers" in cols:
        answers = [_answers(a) for a in get("answers")]
        qids = get("question_id") or [index * _ROW_STRIDE + r for r in range(n)]
        mc = get("multiple_choice_answer") or [Counter(a).most_common(1)[0][0] if a else "" for a in answers]
        out["vqa"] = Dataset.from_dict({
            "question_id": [int(q) for q in qids], "image_id": image_ids, "question": [str(q) for q in get("question")],
            "question_type": [str(t) for t in get("question_type") or [""] * n],
            "answer_type": [str(t) for t in get("answer_type") or [""] * n], "answers": answers,
            "answer_confidence": [["yes"] * len(a) for a in answers], "multiple_choice_answer": [str(m) for m in mc],
        }, features=VQA_FEATURES)
    if "caption" in cols:
        rows: dict[str, list[Any]] = {"caption_id": [], "image_id": [], "caption": []}
        for image_id, cell in zip(image_ids, get("caption")):
            for caption in [cell] if isinstance(cell, str) else list(cell or []):
                rows["caption_id"].append(index * _ROW_STRIDE * 10 + len(rows["caption_id"]))
                rows["image_id"].append(image_id)
                rows["caption"].append(str(caption))
        out["captions"] = Dataset.from_dict(rows, features=CAPTION_FEATURES)
    if "source" in cols and "target" in cols:
        out["vmt"] = Dataset.from_dict({"pair_id": [index * _ROW_STRIDE + r for r in range(n)], "image_id": image_ids,
                                        "source": [str(s) for s in get("source")], "target": [str(t) for t in get("target")]},
                                       features=VMT_FEATURES)
    return out


def build_hf(path: str | None, options: Mapping[str, Any] | None, cache_dir: str | os.PathLike, quiet: bool = False) -> VLDataset:
    """Tables and an Arrow-backed image store from an HF dataset, as the ``columns`` option maps them."""
    if not path:
        raise DataError("dataset 'hf' needs a hub id or a folder: use --dataset hf:ID_OR_DIR (see docs/datasets.md).")
    opts = parse_data_options(HFOptions, options, "hf")
    cols = opts.columns
    if not ({"question", "answers"} <= set(cols) or "caption" in cols or {"source", "target"} <= set(cols)):
        raise DataError("hf: map columns for at least one table: question+answers (vqa), caption (captions) or "
                        "source+target (vmt), e.g. --set 'data.columns={question: q, answers: a, image: img}'.")
    loaded = _load(path, opts)
    wanted = opts.splits or {s: s for s in loaded}
    for ours, theirs in wanted.items():
        if theirs not in loaded:
            raise DataError(f"hf: {path!r} has no split {theirs!r} (it has: {', '.join(loaded)}); set data.splits.")
        missing = [c for c in cols.values() if c not in loaded[theirs].column_names]
        if missing:
            raise DataError(f"hf: {path!r} split {theirs!r} has no column(s) {', '.join(missing)} "
                            f"(it has: {', '.join(loaded[theirs].column_names)}); fix data.columns.")
    tables: dict[str, dict[str, Dataset]] = {}
    rows: dict[int, tuple[str, int]] = {}
    bad: dict[int, str] = {}
    for index, (ours, theirs) in enumerate(wanted.items()):
        ds = loaded[theirs]
        if "image_id" in cols:
            raw_ids = ds[cols["image_id"]]
            try:
                image_ids = [int(i) for i in raw_ids]
            except (TypeError, ValueError):
                raise DataError(f"hf: image_id column {cols['image_id']!r} must hold integers.") from None
        else:
            image_ids = [index * _ROW_STRIDE + r for r in range(ds.num_rows)]
        for r, image_id in enumerate(image_ids):
            rows.setdefault(image_id, (theirs, r))
        for kind, table in _tables(ours, index, ds, cols, image_ids).items():
            tables.setdefault(kind, {})[ours] = table
    content = {s: [loaded[t]._fingerprint, [(Path(f["filename"]).name, os.path.getsize(f["filename"]))
                                           for f in loaded[t].cache_files]] for s, t in wanted.items()}
    fingerprint = source_fingerprint({"builder": "hf", "splits": content, "options": opts.table_options()})
    store: Any = None
    if "image" in cols:
        store = ArrowImageStore({theirs: loaded[theirs] for theirs in wanted.values()}, cols["image"], rows, path)
        bad = _checked_images(store, rows, Path(cache_dir) / "hf" / f"{fingerprint}.images.json", quiet)
    first = [f"{path} split {rows[i][0]!r} row {rows[i][1]} ({bad[i]})" for i in sorted(bad)[:SKIPPED_SHOWN]]
    if bad and opts.strict_images:
        raise DataError(f"hf: {len(bad)} unreadable or truncated image(s), e.g. {'; '.join(first)}.")
    if bad:
        tables = {k: {s: _without(t, set(bad)) for s, t in v.items()} for k, v in tables.items()}
    if bad and not quiet:
        print(f"warning: hf: skipped {len(bad)} unreadable or truncated image(s) and their examples; first: "
              f"{'; '.join(first)}", file=sys.stderr)
    if store is not None and opts.decoded_cache:
        from vlbench.data.files.decoded import DecodedCacheStore

        store = DecodedCacheStore(store, Path(cache_dir) / "decoded", fingerprint, quiet=quiet)
    if store is None:
        store = _NoImages(path)
    info = {"name": "hf", "source": path, "options": opts.table_options(),
            "rows": {k: {s: t.num_rows for s, t in v.items()} for k, v in tables.items()},
            "skipped_images": {"count": len(bad), "first": first}}
    return VLDataset(name="hf", fingerprint=fingerprint, images=store,
                     tables={k: DatasetDict(v) for k, v in tables.items()}, info=info)


def _without(table: Dataset, drop: set[int]) -> Dataset:
    keep = [i for i, image_id in enumerate(table["image_id"]) if int(image_id) not in drop]
    return table if len(keep) == table.num_rows else table.select(keep)


def _checked_images(store: "ArrowImageStore", rows: Mapping[int, tuple[str, int]], record: Path, quiet: bool) -> dict[int, str]:
    """{image id: reason} of images failing the fast check; computed once per dataset fingerprint, then read back."""
    import json

    from rich.progress import track

    from vlbench.data.integrity import build_lock
    from vlbench.io import atomic_write_json

    with build_lock(record):
        if record.is_file():
            return {int(k): v for k, v in json.loads(record.read_text()).items()}
        bad: dict[int, str] = {}
        for image_id in track(list(rows), description="checking hf images", disable=quiet, transient=True):
            data, _ = store._bytes(image_id)
            reason = check_image_bytes(data or b"")
            if reason:
                bad[image_id] = reason
        atomic_write_json(record, {str(k): v for k, v in bad.items()})
        return bad


class _NoImages:
    """The store of a dataset without an image column: any read is a clear error."""

    image_size = None

    def __init__(self, source: str) -> None:
        self.source = source

    def load(self, image_id: int) -> np.ndarray:
        """Always an error: there are no images."""
        raise DataError(f"hf: {self.source!r} has no image column mapped (set data.columns.image) but the model reads images.")

    def get(self, image_ids: list[int]) -> torch.Tensor:
        """Always an error: there are no images."""
        return self.load(0)  # type: ignore[return-value]

    def ids(self) -> list[int]:
        """No images."""
        return []
