"""``coco-karpathy:DIR`` and ``flickr30k:DIR`` — Karpathy's split files as a ``captions`` table.

Layouts::

    DIR/dataset_coco.json       DIR/train2014/COCO_train2014_*.jpg   DIR/val2014/COCO_val2014_*.jpg
    DIR/dataset_flickr30k.json  DIR/flickr30k-images/1000092795.jpg ...

``dataset_*.json`` is ``{"dataset", "images": [{"filename", "filepath"?, "imgid", "cocoid"?, "split",
"sentids", "sentences": [{"raw", "tokens", "sentid", "imgid"}]}]}``. One row per caption
(``caption_id`` = ``sentid``, ``image_id`` = ``cocoid`` for COCO, the numeric file name for Flickr30k,
``caption`` = ``raw``). Splits: ``train`` (COCO: plus ``restval`` when ``restval_in_train``, the
usual 113,287 images), ``val``, ``test`` (5,000 images for COCO, 1,000 for Flickr30k), and for COCO
``test1k``: the first 1,000 test images in file order (fold 1 of the five 1k folds VSE++ averages
over; ``restval`` is also kept as a split of its own).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from datasets import Dataset
from pydantic import Field

from vlbench.data.base import VLDataset
from vlbench.data.files.common import (
    FileDataOptions,
    Made,
    file_dataset,
    image_listing,
    parse_data_options,
    read_json_file,
    require_dir,
    require_file,
)
from vlbench.data.coco_format import CAPTION_FEATURES
from vlbench.errors import DataError
from vlbench.metrics.official import check_fields, entry_error

__all__ = ["KarpathyOptions", "build_coco_karpathy", "build_flickr30k", "captions_tables", "TEST_FOLD_IMAGES"]

_DOWNLOAD = ("download the Karpathy split files (dataset_coco.json, dataset_flickr30k.json) from "
             "https://cs.stanford.edu/people/karpathy/deepimagesent/ (caption_datasets.zip)")
TEST_FOLD_IMAGES = 1000  # the first fold of the 5k test (VSE++ 1k evaluation)


class KarpathyOptions(FileDataOptions):
    """Options of ``coco-karpathy`` and ``flickr30k``."""

    restval_in_train: bool = Field(True, description="COCO: the 30,504 'restval' images join train (113,287 in all)")
    images_dir: Optional[str] = Field(None, description="folder holding the image folders (default: DIR)")


_ENTRY_KINDS = {"split": "text", "filename": "text", "filepath": "text", "imgid": "int", "cocoid": "int"}
_SENTENCE_KINDS = {"raw": "text", "sentid": "int"}


def _plain_name(entry: Mapping[str, Any], field: str, source: str, where: str) -> str:
    """A file or folder name without any path part (the images stay inside the images folder)."""
    name = entry[field]
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise entry_error(source, where, field, "must be a plain file or folder name", name)
    return name


def _checked_entry(entry: Any, kind: str, source: str, where: str) -> tuple[int, str]:
    """(image id, path relative to the images folder) of one image entry, its fields checked (nothing coerced)."""
    required = ("split", "filename", "sentences") + (("filepath", "cocoid") if kind == "coco" else ())
    check_fields(entry, source, where, _ENTRY_KINDS, required)
    filename = _plain_name(entry, "filename", source, where)
    if kind == "coco":
        return entry["cocoid"], f"{_plain_name(entry, 'filepath', source, where)}/{filename}"
    stem = Path(filename).stem
    if stem.isascii() and stem.isdigit():
        return int(stem), filename
    if "imgid" not in entry:
        raise entry_error(source, where, "imgid", f"is missing and the file name {filename!r} is not a numeric id")
    return entry["imgid"], filename


def captions_tables(entries: list[Any], kind: str, restval_in_train: bool,
                    source: str = "Karpathy split file") -> tuple[dict[str, Dataset], dict[int, str]]:
    """Captions tables per split and image id -> path relative to the images folder.

    Every entry is checked against the Karpathy schema first; a wrong type, an image or a sentence id
    given twice, or an image without sentences is one DataError line naming ``source``, the entry and
    the field.
    """
    rows: dict[str, dict[str, list[Any]]] = {}
    order: dict[str, list[int]] = {}
    paths: dict[int, str] = {}
    first_image: dict[int, int] = {}
    first_sentence: dict[int, int] = {}
    for k, entry in enumerate(entries):
        image_id, rel = _checked_entry(entry, kind, source, f"image #{k}")
        where = f"image #{k} (image id {image_id})"
        if image_id in first_image:
            raise entry_error(source, where, "cocoid" if kind == "coco" else "filename",
                              f"repeats image #{first_image[image_id]}: keep one entry per image")
        first_image[image_id] = k
        if not isinstance(entry["sentences"], list) or not entry["sentences"]:
            raise entry_error(source, where, "sentences", 'must be a non-empty list of {"raw", "sentid"} objects',
                              entry["sentences"])
        sentences = []
        for j, sentence in enumerate(entry["sentences"]):
            check_fields(sentence, source, f"{where} sentence #{j}", _SENTENCE_KINDS, tuple(_SENTENCE_KINDS))
            if sentence["sentid"] in first_sentence:
                raise entry_error(source, f"{where} sentence #{j}", "sentid",
                                  f"repeats a sentence of image #{first_sentence[sentence['sentid']]}", sentence["sentid"])
            first_sentence[sentence["sentid"]] = k
            sentences.append((sentence["sentid"], sentence["raw"].strip()))
        split = entry["split"]
        paths[image_id] = rel
        targets = [split]
        if split == "restval" and restval_in_train:
            targets.append("train")
        for target in targets:
            cols = rows.setdefault(target, {"caption_id": [], "image_id": [], "caption": []})
            order.setdefault(target, []).append(image_id)
            for sentid, raw in sentences:
                cols["caption_id"].append(sentid)
                cols["image_id"].append(image_id)
                cols["caption"].append(raw)
    tables = {split: Dataset.from_dict(cols, features=CAPTION_FEATURES) for split, cols in rows.items()}
    for need in ("train", "val", "test"):
        if need not in tables:
            raise DataError(f"{source} has no {need!r} images (splits found: {', '.join(sorted(tables))}).")
    if kind == "coco":
        first = set(order["test"][:TEST_FOLD_IMAGES])
        test = tables["test"]
        tables["test1k"] = test.select([i for i, image_id in enumerate(test["image_id"]) if int(image_id) in first])
    return tables, paths


def _build(name: str, kind: str, json_name: str, image_dirs: tuple[str, ...], path: Optional[str],
           options: Mapping[str, Any] | None, cache_dir: Any, quiet: bool, force: bool) -> VLDataset:
    if not path:
        raise DataError(f"dataset {name!r} reads files: use --dataset {name}:DIR (see docs/datasets.md).")
    opts = parse_data_options(KarpathyOptions, options, name)
    root = require_dir(Path(path).expanduser(), name, _DOWNLOAD)
    annotation = require_file(root / json_name, name, _DOWNLOAD)
    images = Path(opts.images_dir).expanduser() if opts.images_dir else root
    listing = {d: image_listing(require_dir(images / d, name)) for d in image_dirs}
    image_root = images if kind == "coco" else images / image_dirs[0]

    def make() -> Made:
        data = read_json_file(annotation, name)
        entries = data.get("images") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{name}: {str(annotation)!r} is not a Karpathy split file (no 'images' list, or an empty one).")
        tables, paths = captions_tables(entries, kind, opts.restval_in_train, f"{name} file {str(annotation)!r}")
        return Made(tables={"captions": tables}, paths=paths)

    return file_dataset(name, image_root, {"images": listing}, make, opts, cache_dir, quiet, force=force,
                        annotation_files=(annotation,), dataset_path=str(path))


def build_coco_karpathy(path: str | None, options: Mapping[str, Any] | None, cache_dir: str | os.PathLike,
                        quiet: bool = False, *, force: bool = False) -> VLDataset:
    """COCO 2014 images with the Karpathy split's captions (captioning and retrieval)."""
    return _build("coco-karpathy", "coco", "dataset_coco.json", ("train2014", "val2014"), path, options, cache_dir,
                  quiet, force)


def build_flickr30k(path: str | None, options: Mapping[str, Any] | None, cache_dir: str | os.PathLike,
                    quiet: bool = False, *, force: bool = False) -> VLDataset:
    """Flickr30k images with the Karpathy split's captions (captioning and retrieval)."""
    return _build("flickr30k", "flickr30k", "dataset_flickr30k.json", ("flickr30k-images",), path, options, cache_dir,
                  quiet, force)
