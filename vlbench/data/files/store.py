"""Images that stay on disk: a fast check at build time, a full decode (in DataLoader workers) at load time.

Checking 123k COCO images by decoding them all would take far longer than a run's first epoch, so a
build only reads each file's header (PIL identifies format and size without decoding) and its last
bytes (a JPEG must end with the EOI marker ``FF D9``, a PNG with its ``IEND`` chunk): that catches
missing, empty, non-image and truncated files. An image that passes and still fails to decode during a
run raises a :class:`DataError` naming the file (the run fails cleanly; nothing is substituted).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from vlbench.errors import DataError

__all__ = ["check_image", "check_image_bytes", "decode_image", "DiskImageStore", "check_images", "skipped_summary"]

_TAIL = 64
SKIPPED_SHOWN = 5


def check_image(path: str | os.PathLike) -> Optional[str]:
    """Why an image file cannot be used (missing, unreadable header, truncated), or None when it looks whole."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    with open(path, "rb") as handle:
        handle.seek(max(size - _TAIL, 0))
        tail = handle.read()
    return _check(lambda: open(path, "rb"), size, tail)


def check_image_bytes(data: bytes) -> Optional[str]:
    """:func:`check_image` for an image held in memory (e.g. an HF ``Image`` column's bytes)."""
    import io

    return _check(lambda: io.BytesIO(data), len(data), data[-_TAIL:])


def _check(opener: Any, size: int, tail: bytes) -> Optional[str]:
    from PIL import Image, UnidentifiedImageError

    if size == 0:
        return "empty file"
    try:
        with opener() as handle, Image.open(handle) as img:
            fmt = img.format
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"unreadable ({type(exc).__name__})"
    if width < 1 or height < 1:
        return "zero-sized image"
    # some encoders pad after the end marker; only the marker's presence near the end matters
    if fmt == "JPEG" and b"\xff\xd9" not in tail.rstrip(b"\x00"):
        return "truncated (no JPEG end marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated (no PNG IEND chunk)"
    return None


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Fully decode an image file to uint8 RGB (H, W, 3); a failure is a DataError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"cannot decode image {str(path)!r} ({type(exc).__name__}: {exc}); it passed the build-time check, so the "
            "file changed or is damaged inside. Replace or delete it, then run again (deleted images are skipped)."
        ) from None


class DiskImageStore:
    """Images addressed by integer id, decoded from files under ``root`` on each ``load`` (no pixels in memory)."""

    image_size = None  # images keep their own sizes; the model's transform resizes them

    def __init__(self, root: str | os.PathLike, paths: Mapping[int, str]) -> None:
        self.root = str(root)
        self.paths = {int(k): str(v) for k, v in paths.items()}

    def path(self, image_id: int) -> str:
        """The file of one image."""
        try:
            return os.path.join(self.root, self.paths[int(image_id)])
        except KeyError:
            raise DataError(f"image id {image_id} is not in the image store of {self.root!r}") from None

    def load(self, image_id: int) -> np.ndarray:
        """Decoded uint8 (H, W, 3) pixels of one image at its native size."""
        return decode_image(self.path(image_id))

    def get(self, image_ids: Sequence[int]) -> torch.Tensor:
        """Pixels of equal-size images as (B, H, W, 3); images of different sizes need a transform (pixel_batch)."""
        images = [self.load(i) for i in image_ids]
        if len({im.shape for im in images}) > 1:
            raise DataError("images of different sizes cannot be stacked; read them through vlbench.data.images.pixel_batch.")
        return torch.as_tensor(np.stack(images)) if images else torch.zeros((0, 1, 1, 3), dtype=torch.uint8)

    def ids(self) -> list[int]:
        """Every image id in the store."""
        return list(self.paths)


def check_images(root: Path, paths: Mapping[int, str], quiet: bool, label: str) -> dict[int, str]:
    """{image id: reason} for every image that fails :func:`check_image` (progress bar while checking)."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import track

    bad: dict[int, str] = {}
    items = list(paths.items())
    # header reads are file-system bound: a few threads hide the latency of network disks
    with ThreadPoolExecutor(max_workers=8) as pool:
        reasons: Iterable = pool.map(lambda item: check_image(root / item[1]), items, chunksize=64)
        for (image_id, _), reason in zip(items, track(reasons, total=len(items), description=f"checking {label} images",
                                                      disable=quiet, transient=True)):
            if reason is not None:
                bad[int(image_id)] = reason
    return bad


def skipped_summary(root: Path, paths: Mapping[int, str], bad: Mapping[int, str]) -> dict[str, object]:
    """``{"count", "first"}`` for the run record: how many images were skipped and the first few, with why."""
    first = [f"{root / paths[i]} ({bad[i]})" for i in sorted(bad)[:SKIPPED_SHOWN]]
    return {"count": len(bad), "first": first}
