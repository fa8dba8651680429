"""``multi30k:DIR`` — a checkout of the official Multi30k repository plus the Flickr30k images, as a ``vmt`` table.

Layout (https://github.com/multi30k/dataset)::

    DIR/data/task1/raw/{train,val,test_2016_flickr}.{en,de}[.gz]
    DIR/data/task1/image_splits/{train,val,test_2016_flickr}.txt     one image file name per line
    DIR/flickr30k-images/1000092795.jpg ...                           (or the data option images_dir)

Line i of ``<split>.<lang>`` translates line i of the other language and describes the image on line
i of ``image_splits/<split>.txt``. One row per sentence pair: ``pair_id`` (the line number within its
split, plus split_index * 1,000,000), ``image_id`` (the numeric file name), ``source``, ``target``
(``source_lang`` -> ``target_lang``, en -> de by default). Splits: ``train``, ``val``, ``test`` (the
``test_set`` option, ``test_2016_flickr`` by default). ``test_2017_mscoco`` names COCO images and is
refused with one error.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from datasets import Dataset, Features, Value
from pydantic import Field, model_validator

from vlbench.data.base import VLDataset
from vlbench.data.files.common import FileDataOptions, Made, file_dataset, image_listing, parse_data_options, require_dir
from vlbench.errors import DataError
from vlbench.io import MAX_INPUT_BYTES, read_regular_bytes

__all__ = ["Multi30kOptions", "build_multi30k", "VMT_FEATURES", "read_lines"]

VMT_FEATURES = Features({"pair_id": Value("int64"), "image_id": Value("int64"), "source": Value("string"),
                         "target": Value("string")})
_DOWNLOAD = ("clone https://github.com/multi30k/dataset and get the Flickr30k images from "
             "https://shannon.cs.illinois.edu/DenotationGraph/ (flickr30k-images/)")
_PAIR_STRIDE = 1_000_000
Lang = Literal["en", "de", "fr", "cs"]


class Multi30kOptions(FileDataOptions):
    """Options of ``multi30k``."""

    source_lang: Lang = Field("en", description="source language")
    target_lang: Lang = Field("de", description="target language")
    test_set: str = Field("test_2016_flickr", description="which test file set plays the test split")
    images_dir: Optional[str] = Field(None, description="folder of the Flickr30k images (default: DIR/flickr30k-images)")

    @model_validator(mode="after")
    def _different_languages(self) -> "Multi30kOptions":
        if self.source_lang == self.target_lang:
            raise ValueError("source_lang and target_lang must differ")
        return self


def read_lines(path: Path, dataset: str) -> list[str]:
    """Lines of a UTF-8 text file (gzip-compressed when its name ends in .gz), split on ``\\n`` only.

    A regular file of bounded size, decompressed to a bounded size; a file that is not UTF-8 or not
    gzip is one DataError line. Only ``\\n`` ends a line: ``str.splitlines`` would also split inside a
    sentence at U+2028 or a form feed and shift every later pair.
    """
    data = read_regular_bytes(path, what=f"{dataset} file")
    if path.suffix == ".gz":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{dataset} file {str(path)!r} is not a readable gzip file ({exc}).") from None
        if len(data) > MAX_INPUT_BYTES:
            raise DataError(f"{dataset} file {str(path)!r} unpacks to more than {MAX_INPUT_BYTES:,} bytes.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{dataset} file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _lines(folder: Path, stem: str, dataset: str) -> tuple[list[str], Path]:
    plain, packed = folder / stem, folder / f"{stem}.gz"
    for path in (plain, packed):
        if path.exists():
            return read_lines(path, dataset), path
    raise DataError(f"{dataset}: missing file {stem!r} or {stem + '.gz'!r} (looked in {str(folder)!r}); {_DOWNLOAD}.")


def _image_id(name: str, where: str) -> int:
    stem = Path(name.strip()).stem
    if not (stem.isascii() and stem.isdigit()):
        raise DataError(f"multi30k file {where}: image name {name!r} is not a Flickr30k file name (digits + .jpg).")
    return int(stem)


def build_multi30k(path: str | None, options: Mapping[str, Any] | None, cache_dir: str | os.PathLike,
                   quiet: bool = False, *, force: bool = False) -> VLDataset:
    """Multi30k sentence pairs with their Flickr30k images (multimodal machine translation)."""
    if not path:
        raise DataError("dataset 'multi30k' reads files: use --dataset multi30k:DIR (see docs/datasets.md).")
    opts = parse_data_options(Multi30kOptions, options, "multi30k")
    root = require_dir(Path(path).expanduser(), "multi30k", _DOWNLOAD)
    raw = require_dir(root / "data" / "task1" / "raw", "multi30k", _DOWNLOAD)
    splits_dir = require_dir(root / "data" / "task1" / "image_splits", "multi30k", _DOWNLOAD)
    images = Path(opts.images_dir).expanduser() if opts.images_dir else root / "flickr30k-images"
    listing = image_listing(require_dir(images, "multi30k", _DOWNLOAD))
    names = {"train": "train", "val": "val", "test": opts.test_set}
    read: dict[str, tuple[list[str], list[str], list[str]]] = {}
    files: list[Path] = []
    for split, stem in names.items():
        src, src_file = _lines(raw, f"{stem}.{opts.source_lang}", "multi30k")
        tgt, tgt_file = _lines(raw, f"{stem}.{opts.target_lang}", "multi30k")
        image_file = splits_dir / f"{stem}.txt"
        if not image_file.exists():
            raise DataError(f"multi30k: missing file {image_file.name!r} (looked in {str(splits_dir)!r}); {_DOWNLOAD}.")
        image_names = [n for n in read_lines(image_file, "multi30k") if n.strip()]
        coco = next((n.strip() for n in image_names if n.strip().startswith("COCO_")), None)
        if coco is not None:  # test_2017_mscoco describes COCO images, which this reader does not load
            raise DataError(f"multi30k: test set {stem!r} names COCO images (e.g. {coco!r}), not Flickr30k ones; vlbench "
                            "reads Multi30k with the Flickr30k images only: use test_set test_2016_flickr or "
                            "test_2017_flickr.")
        if not len(src) == len(tgt) == len(image_names):
            raise DataError(f"multi30k split {stem!r}: {len(src)} {opts.source_lang} lines, {len(tgt)} {opts.target_lang} "
                            f"lines and {len(image_names)} image names; they must match line by line.")
        read[split] = (src, tgt, image_names)
        files += [src_file, tgt_file, image_file]

    def make() -> Made:
        tables, paths = {}, {}
        for index, (split, (src, tgt, image_names)) in enumerate(read.items()):
            where = repr(str(splits_dir / f"{names[split]}.txt"))
            ids = [_image_id(n, f"{where} name #{k + 1}") for k, n in enumerate(image_names)]
            paths.update({i: n.strip() for i, n in zip(ids, image_names)})
            tables[split] = Dataset.from_dict(
                {"pair_id": [index * _PAIR_STRIDE + k for k in range(len(src))], "image_id": ids,
                 "source": [s.strip() for s in src], "target": [t.strip() for t in tgt]}, features=VMT_FEATURES)
        return Made(tables={"vmt": tables}, paths=paths, info={"languages": f"{opts.source_lang}->{opts.target_lang}"})

    return file_dataset("multi30k", images, {"images": listing}, make, opts, cache_dir, quiet, force=force,
                        annotation_files=tuple(files), dataset_path=str(path))
