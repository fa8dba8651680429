"""``vqav2:DIR`` — the official VQA v2 files (visualqa.org) with the COCO 2014 images, as a ``vqa`` table.

Layout::

    DIR/v2_OpenEnded_mscoco_train2014_questions.json   DIR/v2_mscoco_train2014_annotations.json
    DIR/v2_OpenEnded_mscoco_val2014_questions.json     DIR/v2_mscoco_val2014_annotations.json
    DIR/train2014/COCO_train2014_000000000009.jpg ...  DIR/val2014/COCO_val2014_000000000042.jpg ...

Splits (test-dev answers are not public, so a run never needs the evaluation server):

* ``split_mode: standard`` (default): ``train`` = train2014 minus a held-out slice of its images
  (``val_fraction`` of them, drawn with ``split_seed``), ``val`` = that slice (early stopping),
  ``test`` = val2014 in full (what papers call "val").
* ``split_mode: trainval``: ``train`` = train2014 + val2014 minus the held-out slice and minus a
  ``minival`` of ``minival_images`` val2014 images (drawn with ``split_seed``); ``val`` = the held-out
  train2014 slice; ``minival`` = the minival images (the test role).

All slices are by image, so no image is in two splits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import numpy as np
from datasets import Dataset, concatenate_datasets
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
from vlbench.errors import DataError

__all__ = ["VQAv2Options", "build_vqav2", "QUESTIONS", "ANNOTATIONS", "IMAGE_NAME"]

QUESTIONS = "v2_OpenEnded_mscoco_{subset}_questions.json"
ANNOTATIONS = "v2_mscoco_{subset}_annotations.json"
IMAGE_NAME = "{subset}/COCO_{subset}_{image_id:012d}.jpg"
_DOWNLOAD = "download it from https://visualqa.org/download.html (and the images from https://cocodataset.org/#download)"


class VQAv2Options(FileDataOptions):
    """Options of ``vqav2``."""

    split_mode: Literal["standard", "trainval"] = Field("standard", description="standard: test = val2014; trainval: "
                                                        "train on train2014 + val2014 minus a minival, test = minival")
    val_fraction: float = Field(0.02, gt=0, lt=0.5, description="share of train2014 images held out for validation")
    minival_images: int = Field(1000, ge=1, description="val2014 images in the minival (split_mode trainval)")
    split_seed: int = Field(0, ge=0, description="seed of the held-out and minival draws")
    images_dir: Optional[str] = Field(None, description="folder holding train2014/ and val2014/ (default: DIR)")


def _held_out(image_ids: list[int], count: int, seed: list[int]) -> set[int]:
    order = np.random.default_rng(seed).permutation(np.asarray(sorted(image_ids), dtype=np.int64))
    return {int(i) for i in order[:count]}


def _by_image(table: Dataset, keep: set[int], inside: bool) -> Dataset:
    rows = [i for i, image_id in enumerate(table["image_id"]) if (int(image_id) in keep) == inside]
    return table.select(rows)


def _read(root: Path, subset: str) -> Dataset:
    from vlbench.data.vqa_format import from_official

    paths = root / QUESTIONS.format(subset=subset), root / ANNOTATIONS.format(subset=subset)
    questions, annotations = (read_json_file(p, "vqav2") for p in paths)
    return from_official(questions, annotations, questions_source=f"vqav2 file {str(paths[0])!r}",
                         annotations_source=f"vqav2 file {str(paths[1])!r}")


def _make(root: Path, opts: VQAv2Options) -> Made:
    train, val = _read(root, "train2014"), _read(root, "val2014")
    train_images = sorted({int(i) for i in train["image_id"]})
    val_images = sorted({int(i) for i in val["image_id"]})
    if not train_images or not val_images:
        raise DataError("vqav2: the train2014 or val2014 annotations have no questions.")
    held = _held_out(train_images, max(1, round(opts.val_fraction * len(train_images))), [opts.split_seed, 0])
    if opts.split_mode == "standard":
        splits = {"train": _by_image(train, held, False), "val": _by_image(train, held, True), "test": val}
    else:
        minival = _held_out(val_images, min(opts.minival_images, len(val_images)), [opts.split_seed, 1])
        splits = {
            "train": concatenate_datasets([_by_image(train, held, False), _by_image(val, minival, False)]),
            "val": _by_image(train, held, True),
            "minival": _by_image(val, minival, True),
        }
    paths = {i: IMAGE_NAME.format(subset="train2014", image_id=i) for i in train_images}
    paths.update({i: IMAGE_NAME.format(subset="val2014", image_id=i) for i in val_images})
    info = {"held_out_images": len(held), "split_mode": opts.split_mode}
    return Made(tables={"vqa": splits}, paths=paths, info=info)


def build_vqav2(path: str | None, options: Mapping[str, Any] | None, cache_dir: str | os.PathLike, quiet: bool = False,
                *, force: bool = False) -> VLDataset:
    """VQA v2 from its official files; train/val/test as described in this module (cached, content-checked)."""
    if not path:
        raise DataError("dataset 'vqav2' reads files: use --dataset vqav2:DIR (see docs/datasets.md).")
    opts = parse_data_options(VQAv2Options, options, "vqav2")
    root = require_dir(Path(path).expanduser(), "vqav2", _DOWNLOAD)
    files = []
    for subset in ("train2014", "val2014"):
        files.append(require_file(root / QUESTIONS.format(subset=subset), "vqav2", _DOWNLOAD))
        files.append(require_file(root / ANNOTATIONS.format(subset=subset), "vqav2", _DOWNLOAD))
    images = Path(opts.images_dir).expanduser() if opts.images_dir else root
    listing = {sub: image_listing(require_dir(images / sub, "vqav2", _DOWNLOAD)) for sub in ("train2014", "val2014")}
    return file_dataset("vqav2", images, {"images": listing}, lambda: _make(root, opts), opts, cache_dir, quiet,
                        force=force, annotation_files=tuple(files), dataset_path=str(path))
