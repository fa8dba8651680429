"""Readers for the official prediction/reference file formats used by ``vlbench score``.

Each reader validates shape and types and raises ``DataError`` with one line naming the file and the
offending record, so that a bad file never reaches a metric (or a traceback).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from vlbench.errors import DataError
from vlbench.io import read_regular_bytes
from vlbench.metrics.official import SCORE_FIELDS, is_text, preview, vqa_annotations

__all__ = [
    "read_json_file",
    "read_vqa_predictions",
    "read_vqa_annotations",
    "read_coco_results",
    "read_coco_references",
    "read_similarity_matrix",
    "read_text_to_image",
    "read_lines",
]


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} file {str(path)!r} does not exist.")
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} is not a regular file.")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file, turning a missing, empty or malformed file into one DataError line.

    A regular file only, of a bounded size (a FIFO or a link to /dev/zero is refused, not read
    forever). Strict JSON only: NaN/Infinity are refused, and so are documents nested too deeply for
    the parser and integers longer than Python converts (4300 digits by default).
    """
    data = read_regular_bytes(path, what=f"{what} file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    if not text.strip():
        raise DataError(f"{what} file {str(path)!r} is empty.")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
    except RecursionError:
        raise DataError(f"{what} file {str(path)!r} is nested too deeply to read; official formats are a few levels deep.") from None
    except ValueError as exc:  # e.g. an integer longer than int() converts, or NaN
        reason = str(exc).split(";")[0]
        raise DataError(f"{what} file {str(path)!r} is not valid input: {reason}.") from None


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _records(obj: Any, path: Path, what: str, fields: tuple[str, ...], example: str) -> list[dict[str, Any]]:
    if not isinstance(obj, list):
        raise DataError(f"{what} file {str(path)!r} must be a JSON list like {example}, got a {type(obj).__name__}.")
    if not obj:
        raise DataError(f"{what} file {str(path)!r} is an empty list.")
    for k, rec in enumerate(obj):
        if not isinstance(rec, dict) or any(f not in rec for f in fields):
            raise DataError(
                f"{what} file {str(path)!r}: entry #{k} must be an object with {', '.join(fields)} "
                f"(like {example}), got {preview(rec)}."
            )
    return obj


def read_vqa_predictions(path: Path) -> list[dict[str, Any]]:
    """``[{"question_id": int, "answer": str}]`` (the official VQA results format)."""
    recs = _records(read_json_file(path, "predictions"), path, "predictions", ("question_id", "answer"),
                    '[{"question_id": 1, "answer": "yes"}]')
    for k, rec in enumerate(recs):
        if not _is_id(rec["question_id"]) or not isinstance(rec["answer"], str):
            raise DataError(f"predictions file {str(path)!r}: entry #{k} needs an integer question_id and a string answer.")
    return recs


def read_vqa_annotations(path: Path) -> list[dict[str, Any]]:
    """The ``annotations`` list of an official VQA v2 annotations file (schema checked as the readers check it)."""
    return vqa_annotations(read_json_file(path, "references"), f"references file {str(path)!r}", required=SCORE_FIELDS)


def read_coco_results(path: Path) -> dict[Hashable, str]:
    """``{image_id: caption}`` from a COCO results file ``[{"image_id": int, "caption": str}]``."""
    recs = _records(read_json_file(path, "predictions"), path, "predictions", ("image_id", "caption"),
                    '[{"image_id": 1, "caption": "a dog"}]')
    out: dict[Hashable, str] = {}
    for k, rec in enumerate(recs):
        image_id, caption = rec["image_id"], rec["caption"]
        if not _is_id(image_id) or not is_text(caption):
            raise DataError(f"predictions file {str(path)!r}: entry #{k} needs an integer image_id and a string caption "
                            "(valid Unicode).")
        if image_id in out:
            raise DataError(f"predictions file {str(path)!r} has more than one caption for image_id {image_id}; keep one.")
        out[image_id] = caption
    return out


def read_coco_references(path: Path) -> dict[Hashable, list[str]]:
    """``{image_id: [captions]}`` in the file's ``images`` order from a COCO captions annotation file."""
    obj = read_json_file(path, "references")
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        raise DataError(
            f"references file {str(path)!r} must be a COCO captions object with 'images' and 'annotations' lists."
        )
    images = obj.get("images")
    refs: dict[Hashable, list[str]] = {}
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(im, dict) and _is_id(im.get("id")) for im in images):
            raise DataError(f"references file {str(path)!r}: 'images' must be a list of objects with an integer 'id'.")
        refs = {im["id"]: [] for im in images}
    for k, ann in enumerate(obj["annotations"]):
        if not isinstance(ann, dict) or not _is_id(ann.get("image_id")) or not is_text(ann.get("caption")):
            raise DataError(f"references file {str(path)!r}: annotation #{k} needs an integer image_id and a string caption.")
        if images is not None and ann["image_id"] not in refs:
            raise DataError(f"references file {str(path)!r}: annotation #{k} refers to image_id {ann['image_id']}, "
                            "which is not in 'images'.")
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    empty = [i for i, caps in refs.items() if not caps]
    if not refs:
        raise DataError(f"references file {str(path)!r} has no annotations.")
    if empty:
        raise DataError(f"references file {str(path)!r}: {len(empty)} images have no reference caption "
                        f"(first: {', '.join(map(str, empty[:5]))}).")
    return refs


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _npy_header(path: Path, handle: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, checked against the file size before any data is read."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        shape, _fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(handle)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise DataError(f"predictions file {str(path)!r} has a broken .npy header: {exc}.") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise DataError(f"predictions file {str(path)!r} must hold a 2-D numeric array (images x texts), got {dtype} values.")
    if len(shape) != 2:
        raise DataError(f"predictions file {str(path)!r} must hold a 2-D numeric array (images x texts), got shape {shape}.")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    present = path.stat().st_size - handle.tell()
    if needed != present:
        raise DataError(f"predictions file {str(path)!r}: its header says shape {shape} ({needed} bytes of data) but the "
                        f"file holds {present} bytes; it is truncated or not what np.save wrote.")
    return shape, dtype


def read_similarity_matrix(path: Path) -> np.ndarray:
    """A 2-D numeric ``.npy`` similarity matrix (images x texts), its header checked before loading."""
    _require_file(path, "predictions")
    if path.stat().st_size == 0:
        raise DataError(f"predictions file {str(path)!r} is empty.")
    with open(path, "rb") as handle:
        magic = handle.read(len(_NPY_MAGIC))
        if magic.startswith(_ZIP_MAGIC[:2]):
            raise DataError(f"predictions file {str(path)!r} is a zip (.npz) archive; save the matrix alone with np.save.")
        if magic != _NPY_MAGIC:
            raise DataError(f"predictions file {str(path)!r} is not a .npy array (no NUMPY magic); save it with np.save.")
        handle.seek(0)
        _npy_header(path, handle)
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"predictions file {str(path)!r} is not a readable .npy array: {exc}.") from None
    return matrix


def read_text_to_image(path: Path) -> list[int]:
    """The ``text_to_image`` list (image index of each text) of a retrieval references file."""
    obj = read_json_file(path, "references")
    t2i = obj.get("text_to_image") if isinstance(obj, dict) else None
    if not isinstance(t2i, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in t2i):
        raise DataError(f"references file {str(path)!r} must be an object {{\"text_to_image\": [image index of each text]}}.")
    if not t2i:
        raise DataError(f"references file {str(path)!r} has an empty 'text_to_image' list.")
    return t2i


def read_lines(path: Path, what: str) -> list[str]:
    """Lines of a UTF-8 text file as the sacrebleu CLI reads them: split on ``\\n`` only, each ``rstrip()``-ed."""
    data = read_regular_bytes(path, what=f"{what} file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    if not text:
        raise DataError(f"{what} file {str(path)!r} is empty.")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip() for line in lines]
