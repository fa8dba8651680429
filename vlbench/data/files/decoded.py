"""The optional decoded-image cache (data option ``decoded_cache: true``): uint8 pixels at the model's input size.

Decoding a 640x480 JPEG costs far more than normalising a 384x384 array, and every baseline and seed
decodes the same images again. With the option on, the first run that reads images through a given
transform decodes each image once, resizes it the way the transform would (a square resize, or the
HF image processor's own resize without rescaling or normalisation), and writes the uint8 result to
an Arrow file under ``<cache>/decoded/<dataset fingerprint>-<transform hash>/``. Later runs, other
baselines with the same transform, and DataLoader workers read that file (memory-mapped) instead.

Fixed-size results are stored as ``Array3D(uint8)``; variable-size ones (e.g. ViLT's shorter side
384) as raw bytes with their height and width. The cached pixels are rounded to uint8 after resizing,
so they can differ from the uncached path by one grey level: the option enters the task's data
options, hence the config hash, and runs with and without it are never mixed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vlbench.data.images import ProcessorTransform, SquareResize
from vlbench.data.integrity import MANIFEST, build_lock, verify_manifest, write_manifest
from vlbench.errors import DataError

__all__ = ["DecodedCacheStore", "resize_for_cache"]

_FILE = "pixels.arrow"


def resize_for_cache(transform: Any, image: np.ndarray) -> np.ndarray:
    """The transform's resize step alone, as uint8 HWC (what the cache stores)."""
    if isinstance(transform, SquareResize):
        from PIL import Image

        resized = Image.fromarray(image).resize((transform.size, transform.size), Image.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)
    if isinstance(transform, ProcessorTransform):
        try:
            out = transform.processor(images=[image], do_rescale=False, do_normalize=False, do_pad=False,
                                      return_tensors="np")["pixel_values"][0]
        except (TypeError, ValueError) as exc:
            raise DataError(f"decoded_cache: {transform.name} cannot resize without normalising ({exc}); "
                            "turn decoded_cache off for this model.") from None
        chw = np.asarray(out)
        return np.clip(np.rint(chw.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
    raise DataError(f"decoded_cache supports square resizes and HF image processors, not {type(transform).__name__}; "
                    "turn decoded_cache off.")


class _CachedView:
    """One transform's decoded images, read from the cache's Arrow file."""

    image_size = None

    def __init__(self, folder: Path, fixed: bool) -> None:
        from datasets import Dataset

        self.folder, self.fixed = folder, fixed
        self.table = Dataset.from_file(str(folder / _FILE))
        self.row = {int(i): r for r, i in enumerate(self.table["image_id"])}
        self.table = self.table.with_format("numpy") if fixed else self.table

    def load(self, image_id: int) -> np.ndarray:
        """The cached uint8 (H, W, 3) pixels of one image."""
        try:
            row = self.table[self.row[int(image_id)]]
        except KeyError:
            raise DataError(f"image id {image_id} is not in the decoded cache {str(self.folder)!r}") from None
        if self.fixed:
            return np.array(row["pixels"], dtype=np.uint8)
        return np.frombuffer(row["pixels"], dtype=np.uint8).reshape(int(row["height"]), int(row["width"]), 3).copy()

    def ids(self) -> list[int]:
        """Every cached image id."""
        return list(self.row)


class DecodedCacheStore:
    """An image store with a decoded cache per transform (see the module docstring)."""

    image_size = None

    def __init__(self, inner: Any, root: Path, fingerprint: str, quiet: bool = True) -> None:
        self.inner, self.root, self.fingerprint, self.quiet = inner, Path(root), fingerprint, quiet
        self._views: dict[str, _CachedView] = {}

    def load(self, image_id: int) -> np.ndarray:
        """Native-size pixels of one image (no transform known: the cache is not used)."""
        return self.inner.load(image_id)

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Native-size pixels of equal-size images."""
        return self.inner.get(image_ids)

    def ids(self) -> list[int]:
        """Every image id in the store."""
        return self.inner.ids()

    def folder(self, transform: Any) -> Path:
        """The cache folder of one transform."""
        digest = hashlib.sha256(transform.signature().encode()).hexdigest()[:12]
        return self.root / f"{self.fingerprint}-{digest}"

    def for_transform(self, transform: Any) -> _CachedView:
        """The cached view for ``transform``, built (once, under a lock) on first use."""
        signature = transform.signature()
        if signature not in self._views:
            folder = self.folder(transform)
            with build_lock(folder):
                if not (folder / MANIFEST).is_file():
                    self._build(transform, folder)
                # full hashes of a large pixel cache are checked by `vlbench data verify`; here sizes only
                verify_manifest(folder, "decoded cache", "Delete the folder to rebuild it.", full=False)
            self._views[signature] = _CachedView(folder, isinstance(transform, SquareResize))
        return self._views[signature]

    def _build(self, transform: Any, folder: Path) -> None:
        from datasets import Array3D, Features, Value
        from datasets.arrow_writer import ArrowWriter
        from rich.progress import track

        fixed = isinstance(transform, SquareResize)
        if fixed:
            features = Features({"image_id": Value("int64"), "pixels": Array3D((transform.size, transform.size, 3), "uint8")})
        else:
            features = Features({"image_id": Value("int64"), "height": Value("int32"), "width": Value("int32"),
                                 "pixels": Value("binary")})
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            with ArrowWriter(features=features, path=str(tmp / _FILE)) as writer:
                ids = self.inner.ids()
                for image_id in track(ids, description="decoding images into the cache", disable=self.quiet, transient=True):
                    pixels = resize_for_cache(transform, self.inner.load(image_id))
                    if fixed:
                        writer.write({"image_id": int(image_id), "pixels": pixels})
                    else:
                        writer.write({"image_id": int(image_id), "height": pixels.shape[0], "width": pixels.shape[1],
                                      "pixels": np.ascontiguousarray(pixels).tobytes()})
                writer.finalize()
            (tmp / "transform.txt").write_text(transform.signature() + "\n")
            write_manifest(tmp)
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
