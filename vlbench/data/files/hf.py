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
from vlbench.metrics.official import check_fields, check_vqa_annotations, entry_error

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


def _answer_records(cell: Any) -> Any:
    """An answers cell as VQA answer records: the shape normalised, no value coerced (the checks see the values)."""
    if isinstance(cell, str):
        return [{"answer": cell}]
    if isinstance(cell, dict) and isinstance(cell.get("answer"), list):  # a columnar list of records
        return [{"answer": a} for a in cell["answer"]]
    if isinstance(cell, list):
        return [a if isinstance(a, dict) else {"answer": a} for a in cell]
    return cell


def _texts(values: list[Any], source: str, role: str) -> list[str]:
    for r, value in enumerate(values):
        check_fields({role: value}, source, f"row #{r}", {role: "text"}, (role,))
    return values


def _vqa_table(ds: Dataset, cols: dict[str, str], index: int, image_ids: list[int], source: str) -> Dataset:
    """The ``vqa`` table of one split, every row checked as an official VQA annotation is (nothing coerced)."""
    from vlbench.data.vqa_format import VQA_FEATURES

    optional = [r for r in ("question_id", "question_type", "answer_type", "multiple_choice_answer") if r in cols]
    columns = {role: list(ds[cols[role]]) for role in ("question", "answers", *optional)}
    records = []
    for r in range(ds.num_rows):
        record = {role: columns[role][r] for role in ("question", *optional)}
        record["answers"] = _answer_records(columns["answers"][r])
        records.append(record)
    required = ("question", "answers", *(["question_id"] if "question_id" in cols else []))
    check_vqa_annotations(records, source, required=required, entry="row", choice_without_answers=True)
    answers = [[a["answer"] for a in rec["answers"]] for rec in records]
    return Dataset.from_dict({
        "question_id": [rec.get("question_id", index * _ROW_STRIDE + r) for r, rec in enumerate(records)],
        "image_id": image_ids, "question": columns["question"],
        "question_type": [rec.get("question_type", "") for rec in records],
        "answer_type": [rec.get("answer_type", "") for rec in records], "answers": answers,
        "answer_confidence": [[a.get("answer_confidence", "yes") for a in rec["answers"]] for rec in records],
        "multiple_choice_answer": [rec["multiple_choice_answer"] if "multiple_choice_answer" in rec
                                   else Counter(a).most_common(1)[0][0] for rec, a in zip(records, answers)],
    }, features=VQA_FEATURES)


def _tables(index: int, ds: Dataset, cols: dict[str, str], image_ids: list[int], source: str) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    if "question" in cols and "answers" in cols:
        out["vqa"] = _vqa_table(ds, cols, index, image_ids, source)
    if "caption" in cols:
        rows: dict[str, list[Any]] = {"caption_id": [], "image_id": [], "caption": []}
        for r, (image_id, cell) in enumerate(zip(image_ids, ds[cols["caption"]])):
            captions = [cell] if isinstance(cell, str) else cell
            if not isinstance(captions, list) or not captions:
                raise entry_error(source, f"row #{r}", "caption", "must be a string or a non-empty list of strings", cell)
            for caption in _texts(captions, f"{source} row #{r}", "caption"):
                rows["caption_id"].append(index * _ROW_STRIDE * 10 + len(rows["caption_id"]))
                rows["image_id"].append(image_id)
                rows["caption"].append(caption)
        out["captions"] = Dataset.from_dict(rows, features=CAPTION_FEATURES)
    if "source" in cols and "target" in cols:
        out["vmt"] = Dataset.from_dict({"pair_id": [index * _ROW_STRIDE + r for r in range(ds.num_rows)],
                                        "image_id": image_ids, "source": _texts(list(ds[cols["source"]]), source, "source"),
                                        "target": _texts(list(ds[cols["target"]]), source, "target")},
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
        source = f"hf dataset {path!r} split {theirs!r}"
        if "image_id" in cols:
            image_ids = list(ds[cols["image_id"]])
            for r, image_id in enumerate(image_ids):
                check_fields({"image_id": image_id}, source, f"row #{r}", {"image_id": "int"}, ("image_id",))
        else:
            image_ids = [index * _ROW_STRIDE + r for r in range(ds.num_rows)]
        for r, image_id in enumerate(image_ids):
            rows.setdefault(image_id, (theirs, r))
        for kind, table in _tables(index, ds, cols, image_ids, source).items():
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
