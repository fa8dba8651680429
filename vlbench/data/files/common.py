"""What every builder of on-disk datasets shares: options, clear errors for missing files, and the tables cache.

A builder reads the official annotation files, makes one ``DatasetDict`` per table kind and the image
id -> file map, and hands them to :func:`file_dataset`. That function keys the cache on the *content*
of the sources (annotation file hashes, the image list with sizes, the options that shape tables),
builds once under a lock (images checked, examples of bad images dropped), writes per-file hashes,
and on every later load verifies them before returning a :class:`VLDataset` with an on-disk store.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

from datasets import Dataset, DatasetDict, Features, Value
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlbench.data.base import VLDataset
from vlbench.data.files.store import DiskImageStore, check_images, skipped_summary
from vlbench.data.integrity import MANIFEST, build_lock, file_sha256, source_fingerprint, verify_manifest, write_manifest
from vlbench.errors import DataError, SpecError
from vlbench.specs.schema import SettingsModel

__all__ = ["FileDataOptions", "parse_data_options", "require_file", "require_dir", "read_json_file", "image_listing",
           "Made", "file_dataset", "CACHE_VERSION"]

# bump when the layout of a files cache changes
CACHE_VERSION = "1"
_INFO = "info.json"
_IMAGE_INDEX = Features({"image_id": Value("int64"), "path": Value("string")})
O = TypeVar("O", bound="FileDataOptions")


class FileDataOptions(SettingsModel):
    """Options every on-disk dataset takes (the ``data:`` block of a task spec, or ``--set data.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    strict_images: bool = Field(False, description="an unreadable or truncated image is an error instead of being skipped")
    decoded_cache: bool = Field(False, description="keep images decoded at the model's input size in an Arrow cache")

    def table_options(self) -> dict[str, Any]:
        """Options that change the tables (the cache key); run-time switches are left out."""
        return self.model_dump(mode="json", exclude={"strict_images", "decoded_cache"})


def parse_data_options(cls: type[O], options: Mapping[str, Any] | None, dataset: str) -> O:
    """Validate a builder's options; a bad or unknown one is a SpecError listing the options it knows."""
    try:
        return cls.model_validate(dict(options or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first.get("loc", ())) or "(options)"
        msg = "unknown option" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        raise SpecError(f"{dataset} data option {name!r}: {msg} (known options: {', '.join(cls.model_fields)}).") from None


def require_file(path: Path, dataset: str, hint: str = "") -> Path:
    """``path`` when it is a file; otherwise one DataError naming the file and where it looked."""
    if not path.is_file():
        extra = f" {hint}" if hint else ""
        raise DataError(f"{dataset}: missing file {path.name!r} (looked in {str(path.parent)!r}).{extra}")
    return path


def require_dir(path: Path, dataset: str, hint: str = "") -> Path:
    """``path`` when it is a folder; otherwise one DataError naming it and where it looked."""
    if not path.is_dir():
        extra = f" {hint}" if hint else ""
        raise DataError(f"{dataset}: missing folder {path.name + '/'!r} (looked in {str(path.parent)!r}).{extra}")
    return path


def read_json_file(path: Path, dataset: str) -> Any:
    """Parsed JSON of an annotation file, read as ``vlbench score`` reads its files (strict JSON, a regular file
    of bounded size); anything else is one DataError line naming the file."""
    from vlbench.metrics.formats import read_json_file as read_strict_json

    return read_strict_json(path, dataset)


def image_listing(folder: Path) -> list[tuple[str, int]]:
    """(name, size) of every file in an image folder, sorted: the image list of the dataset fingerprint."""
    with os.scandir(folder) as entries:
        return sorted((e.name, e.stat().st_size) for e in entries if e.is_file())


@dataclass
class Made:
    """A builder's output before checking images: tables per kind and split, and image id -> relative path."""

    tables: dict[str, dict[str, Dataset]]
    paths: dict[int, str]
    info: dict[str, Any] = field(default_factory=dict)


def _drop_bad(table: Dataset, bad: set[int]) -> Dataset:
    if not bad or "image_id" not in table.column_names:
        return table
    keep = [i for i, image_id in enumerate(table["image_id"]) if int(image_id) not in bad]
    return table if len(keep) == table.num_rows else table.select(keep)


def _write(folder: Path, made: Made, root: Path, quiet: bool, label: str, info: dict[str, Any]) -> None:
    bad = check_images(root, made.paths, quiet, label)
    bad_ids = set(bad)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        import datasets

        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # the build shows its own progress
        counts: dict[str, dict[str, int]] = {}
        for kind, splits in made.tables.items():
            kept = DatasetDict({s: _drop_bad(t, bad_ids) for s, t in splits.items()})
            kept.save_to_disk(str(tmp / kind))
            counts[kind] = {s: t.num_rows for s, t in kept.items()}
        good = {i: p for i, p in made.paths.items() if i not in bad_ids}
        Dataset.from_dict({"image_id": list(good), "path": list(good.values())}, features=_IMAGE_INDEX).save_to_disk(
            str(tmp / "images"))
        full = {**info, **made.info, "rows": counts, "images": len(good),
                "skipped_images": skipped_summary(root, made.paths, bad)}
        from vlbench.io import atomic_write_json

        atomic_write_json(tmp / _INFO, full)
        write_manifest(tmp)
        if bars:
            datasets.enable_progress_bars()
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot write the {label} cache under {str(folder.parent)!r}: {exc.strerror or exc}.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_dataset(
    name: str,
    root: Path,
    sources: dict[str, Any],
    make: Callable[[], Made],
    options: FileDataOptions,
    cache_dir: str | os.PathLike,
    quiet: bool,
    *,
    force: bool = False,
    annotation_files: tuple[Path, ...] = (),
    dataset_path: Optional[str] = None,
) -> VLDataset:
    """Build (once, under a lock) or load the cached tables of an on-disk dataset and return it.

    ``sources`` describes the content (image lists, anything the tables depend on); the hashes of
    ``annotation_files`` and the table options are added to it, and the whole is the fingerprint.
    """
    payload = {"builder": name, "cache_version": CACHE_VERSION, "options": options.table_options(), **sources,
               "annotations": {p.name: file_sha256(p) for p in annotation_files}}
    key = source_fingerprint(payload)
    folder = Path(cache_dir) / name / key
    hint = f"Rebuild it with `vlbench data build {name}:{dataset_path or root} --force` (check caches with `vlbench data verify`)."
    with build_lock(folder):
        if force or not (folder / MANIFEST).is_file():
            _write(folder, make(), root, quiet, name, {"name": name, "key": key, "options": options.table_options()})
        verify_manifest(folder, f"dataset {name!r}", hint)
        info = json.loads((folder / _INFO).read_text())
        tables = {kind: DatasetDict.load_from_disk(str(folder / kind)) for kind in info["rows"]}
        index = Dataset.load_from_disk(str(folder / "images"))
    paths = dict(zip((int(i) for i in index["image_id"]), index["path"]))
    skipped = info["skipped_images"]
    if skipped["count"]:
        listing = "; ".join(skipped["first"])
        if options.strict_images:
            raise DataError(f"{name}: {skipped['count']} unreadable or truncated image(s), e.g. {listing}. Fix or remove "
                            "them, or drop strict_images to skip them.")
        if not quiet:
            print(f"warning: {name}: skipped {skipped['count']} unreadable or truncated image(s) and their examples; "
                  f"first: {listing}", file=sys.stderr)
    store: Any = DiskImageStore(root, paths)
    if options.decoded_cache:
        from vlbench.data.files.decoded import DecodedCacheStore

        store = DecodedCacheStore(store, Path(cache_dir) / "decoded", key, quiet=quiet)
    info = {**info, "source": str(root)}
    return VLDataset(name=name, fingerprint=key, images=store, tables=tables, info=info)
