"""Build (or load from cache) the embedded shapes dataset: options, cache key, atomic cache, VLDataset.

Every split draws from its own random streams keyed by (seed, split), so changing the size of one
split never changes the images or questions of another, and the same options give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
from datasets import Array3D, Dataset, DatasetDict, Features, Value, concatenate_datasets
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlbench.data.base import ArrayImageStore, VLDataset, default_cache_dir
from vlbench.data.shapes import vqa as _vqa  # noqa: F401  (registers the "vqa" table maker)
from vlbench.data.shapes.vqa import DEFAULT_SHARES, FAMILIES
from vlbench.data.shapes import captions as _captions  # noqa: F401  (registers the "captions" table maker)
from vlbench.data.shapes import translation as _translation  # noqa: F401  (registers the "vmt" table maker)
from vlbench.data.shapes.render import render_scenes
from vlbench.data.shapes.tables import TABLE_MAKERS, SplitScenes, table_rng
from vlbench.data.shapes.world import IMAGE_SIZE, sample_scenes
from vlbench.data.integrity import build_lock, content_fingerprint, verify_manifest, write_manifest
from vlbench.errors import DataError, SpecError
from vlbench.io import atomic_write_json, read_json
from vlbench.specs.schema import SettingsModel

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "IMAGE_ID_STRIDE",
    "ShapesOptions",
    "GeneratedShapes",
    "parse_options",
    "cache_key",
    "default_cache_dir",
    "cache_folder",
    "generate_shapes",
    "generate_table",
    "build_shapes",
]

# bump whenever the bytes of scenes or images change for the same options (table makers have their own)
GENERATOR_VERSION = "2"
SPLITS: tuple[str, ...] = ("train", "val", "test")
# image ids are split_index * IMAGE_ID_STRIDE + index, unique across splits and stable when sizes change
IMAGE_ID_STRIDE = 1_000_000
IMAGE_FEATURES = Features(
    {
        "image_id": Value("int64"),
        "split": Value("string"),
        "pixels": Array3D(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8"),
        "scene": Value("string"),
    }
)
_INFO_FILE = "info.json"
_TMP_PREFIX = ".tmp-"


class ShapesOptions(SettingsModel):
    """Options of the shapes dataset (the ``data:`` block of a task spec, or ``--set data.key=value``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="generator seed; same seed, same bytes")
    train_images: int = Field(6000, ge=1, lt=IMAGE_ID_STRIDE, description="images in the train split")
    val_images: int = Field(600, ge=1, lt=IMAGE_ID_STRIDE, description="images in the val split")
    test_images: int = Field(600, ge=1, lt=IMAGE_ID_STRIDE, description="images in the test split")
    questions_per_image: float = Field(5.0, gt=0, le=20, description="average VQA questions per image")
    question_mix: Optional[dict[str, float]] = Field(
        None, description="share per question family (color, shape, count, exist, relation), overriding the defaults; 0 drops one"
    )

    @field_validator("question_mix")
    @classmethod
    def _known_families(cls, value: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        if value is None:
            return value
        unknown = sorted(set(value) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown question famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        if any(v < 0 for v in value.values()):
            raise ValueError("shares must be >= 0")
        if sum({**DEFAULT_SHARES, **value}.values()) <= 0:
            raise ValueError("at least one question family needs a positive share")
        return value

    def split_sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return {"train": self.train_images, "val": self.val_images, "test": self.test_images}


def parse_options(options: Mapping[str, Any] | None) -> ShapesOptions:
    """Validate builder options; a bad field raises SpecError naming it and listing the known ones."""
    try:
        return ShapesOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "(options)"
        known = ", ".join(ShapesOptions.model_fields)
        raise SpecError(f"shapes data option {field!r}: {first.get('msg', 'invalid')} (known options: {known}).") from None


def cache_key(options: ShapesOptions) -> str:
    """16-hex key over generator/table versions, seed and every size option."""
    payload = {
        "generator": GENERATOR_VERSION,
        "tables": {kind: maker.version for kind, maker in sorted(TABLE_MAKERS.items())},
        "options": options.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_folder(cache_dir: str | os.PathLike, options: ShapesOptions) -> Path:
    """Where the dataset for ``options`` lives: ``<cache_dir>/shapes/<key>``."""
    return Path(cache_dir) / "shapes" / cache_key(options)


@dataclass
class GeneratedShapes:
    """An in-memory build: one images Dataset over all splits and a DatasetDict per table kind."""

    images: Dataset
    tables: dict[str, DatasetDict]


def _split_scenes(options: ShapesOptions, split_index: int) -> SplitScenes:
    """The scenes of split ``SPLITS[split_index]`` and their image ids, as every build draws them."""
    n = options.split_sizes()[SPLITS[split_index]]
    scenes = sample_scenes(np.random.default_rng([options.seed, split_index, 0]), n)
    return SplitScenes(SPLITS[split_index], scenes, [split_index * IMAGE_ID_STRIDE + i for i in range(n)])


def _make_table(kind: str, options: ShapesOptions, split: SplitScenes, split_index: int) -> Dataset:
    return TABLE_MAKERS[kind].make(split, options, table_rng(options.seed, split_index, kind))


def generate_table(options: ShapesOptions, kind: str) -> DatasetDict:
    """One table kind (``vqa``, ``captions``, ``vmt``) of every split as a build makes it, without rendering images."""
    return DatasetDict({split: _make_table(kind, options, _split_scenes(options, i), i) for i, split in enumerate(SPLITS)})


def generate_shapes(options: ShapesOptions, quiet: bool = True) -> GeneratedShapes:
    """Generate every split in memory (no disk access)."""
    from rich.progress import Progress  # imported here: only builds show progress

    image_parts: list[Dataset] = []
    table_parts: dict[str, dict[str, Dataset]] = {kind: {} for kind in TABLE_MAKERS}
    sizes = options.split_sizes()
    with Progress(disable=quiet, transient=True) as progress:
        # one unit per image per stage (images, then each table), so the bar moves evenly
        task = progress.add_task("generating shapes", total=sum(sizes.values()) * (1 + len(TABLE_MAKERS)))
        for split_index, split in enumerate(SPLITS):
            n = sizes[split]
            split_scenes = _split_scenes(options, split_index)
            scenes, image_ids = split_scenes.scenes, split_scenes.image_ids
            pixels = render_scenes(scenes, np.random.default_rng([options.seed, split_index, 1]))
            image_parts.append(
                Dataset.from_dict(
                    {"image_id": image_ids, "split": [split] * n, "pixels": pixels, "scene": [s.to_json() for s in scenes]},
                    features=IMAGE_FEATURES,
                )
            )
            progress.advance(task, n)
            for kind in TABLE_MAKERS:
                progress.update(task, description=f"shapes {split}: {kind}")
                table_parts[kind][split] = _make_table(kind, options, split_scenes, split_index)
                progress.advance(task, n)
    return GeneratedShapes(
        images=concatenate_datasets(image_parts),
        tables={kind: DatasetDict(parts) for kind, parts in table_parts.items()},
    )


def _info(options: ShapesOptions, generated_counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    return {
        "name": "shapes",
        "generator_version": GENERATOR_VERSION,
        "table_versions": {kind: maker.version for kind, maker in sorted(TABLE_MAKERS.items())},
        "key": cache_key(options),
        "seed": options.seed,
        "options": options.model_dump(mode="json"),
        "image_size": IMAGE_SIZE,
        "splits": {s: dict(c) for s, c in generated_counts.items()},
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(root: Path) -> None:
    # a killed build leaves its temp folder behind; it is never read, only cleaned here
    for tmp in root.glob(f"{_TMP_PREFIX}*"):
        parts = tmp.name[len(_TMP_PREFIX) :].split("-")
        if len(parts) >= 2 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _datasets_bars_off() -> Iterator[None]:
    # datasets prints a bar per saved table; the build shows its own progress instead
    import datasets

    was_disabled = datasets.is_progress_bar_enabled() is False
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _save(generated: GeneratedShapes, folder: Path) -> None:
    generated.images.save_to_disk(str(folder / "images"))
    for kind, table in generated.tables.items():
        table.save_to_disk(str(folder / kind))


def _write_cache(generated: GeneratedShapes, options: ShapesOptions, folder: Path) -> None:
    """Write to a temp folder beside ``folder`` and rename it into place, so no reader sees half a cache."""
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache folder {str(root)!r}: {exc.strerror or exc}; pass --cache-dir or set VLBENCH_CACHE.") from exc
    _remove_stale_temps(root)
    tmp = root / f"{_TMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _datasets_bars_off():
            _save(generated, tmp)
        counts = {split: {"images": n} for split, n in options.split_sizes().items()}
        for kind, table in generated.tables.items():
            for split in SPLITS:
                counts[split][kind] = table[split].num_rows
        atomic_write_json(tmp / _INFO_FILE, _info(options, counts))
        write_manifest(tmp)  # last: it covers every file above
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / _INFO_FILE).is_file():
                raise
            # another process finished the same build first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot write the shapes cache under {str(root)!r}: {exc.strerror or exc}.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rebuild_hint(options: Optional[ShapesOptions]) -> str:
    sets = "" if options is None else "".join(f" --set data.{k}={json.dumps(v)}" for k, v in
                                              options.model_dump(mode="json", exclude_defaults=True).items())
    return f"Rebuild it with `vlbench data build shapes --force{sets}` (check any cache with `vlbench data verify`)."


def _load_cache(folder: Path, options: Optional[ShapesOptions] = None) -> VLDataset:
    """Open a finished cache folder after checking its files' hashes; pixels become one uint8 array."""
    from datasets import load_from_disk

    manifest = verify_manifest(folder, "dataset 'shapes'", _rebuild_hint(options))
    info = read_json(folder / _INFO_FILE)
    images = load_from_disk(str(folder / "images"))
    # the numpy formatter widens integers to int64 unless told the dtype (8x the memory, 40x slower)
    pixels = images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    image_ids = images.data.column("image_id").to_pylist()
    tables: dict[str, DatasetDict] = {kind: DatasetDict.load_from_disk(str(folder / kind)) for kind in info["table_versions"]}
    # per-split scenes, for consumers that derive their own tables (captions, retrieval, vmt);
    # splits were written one after another, so each is a contiguous row range
    scene_parts, start = {}, 0
    for split in SPLITS:
        n = int(info["splits"][split]["images"])
        scene_parts[split] = images.select(range(start, start + n)).remove_columns(["pixels", "split"])
        start += n
    tables["scenes"] = DatasetDict(scene_parts)
    return VLDataset(
        name="shapes",
        fingerprint=content_fingerprint(manifest),
        images=ArrayImageStore(np.ascontiguousarray(pixels), image_ids),
        tables=tables,
        info=info,
    )


def build_shapes(
    path: str | None,
    options: Mapping[str, Any] | None,
    cache_dir: str | os.PathLike | None = None,
    quiet: bool = False,
    *,
    force: bool = False,
) -> VLDataset:
    """Return the shapes dataset for ``options``, generating and caching it unless an identical build exists."""
    if path:
        raise DataError(f"dataset 'shapes' is generated, it reads no files (got path {path!r}); use --dataset shapes.")
    opts = parse_options(options)
    folder = cache_folder(cache_dir if cache_dir is not None else default_cache_dir(), opts)
    # one build per cache folder: a second process waits here, then finds the finished cache
    with build_lock(folder):
        return _build_or_load(folder, opts, quiet, force)


def _build_or_load(folder: Path, opts: ShapesOptions, quiet: bool, force: bool) -> VLDataset:
    from vlbench.data.integrity import MANIFEST

    if not force and (folder / _INFO_FILE).is_file() and (folder / MANIFEST).is_file():
        # hash mismatches raise (a cache that changed after its build is never used silently)
        return _load_cache(folder, opts)
    if not force and folder.exists() and not quiet:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]shapes cache {folder} is incomplete or predates content hashes; rebuilding[/]")
    start = time.perf_counter()
    generated = generate_shapes(opts, quiet=quiet)
    if folder.exists():
        # forced or incomplete: move the old copy aside first so the rename below can land
        trash = folder.parent / f"{_TMP_PREFIX}{folder.name}-old-{uuid.uuid4().hex[:8]}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    _write_cache(generated, opts, folder)
    dataset = _load_cache(folder, opts)
    if not quiet:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True, highlight=False).print(f"built shapes {folder.name} in {time.perf_counter() - start:.1f}s -> {folder}")
    return dataset
