"""A PNG contact sheet of dataset images with their VQA questions and majority answers, for people to check."""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlbench.data.base import VLDataset
from vlbench.errors import DataError
from vlbench.io import atomic_write_bytes

__all__ = ["render_grid", "save_grid"]

_SCALE = 4
_TILE_WIDTH = 400
_PAD = 10
_LINE = 17
_FONT_SIZE = 13
_QUESTION_INK = (20, 20, 20)
_ANSWER_INK = (0, 70, 200)
_LABEL_INK = (120, 120, 120)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = "  " + word  # indent continuation lines so each question stays readable as one item
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def render_grid(dataset: VLDataset, split: str = "test", n: int = 16, columns: int | None = None) -> Image.Image:
    """The first ``n`` images of ``split`` (upscaled) with each question and its majority answer below."""
    if n < 1:
        raise DataError(f"--n must be at least 1, got {n}.")
    table = dataset.split("vqa", split).select_columns(["image_id", "question", "multiple_choice_answer"]).to_dict()
    questions: dict[int, list[tuple[str, str]]] = defaultdict(list)
    order: list[int] = []
    for image_id, question, answer in zip(table["image_id"], table["question"], table["multiple_choice_answer"]):
        if image_id not in questions:
            order.append(image_id)
        questions[image_id].append((question, answer))
    image_ids = order[:n]
    if not image_ids:
        raise DataError(f"split {split!r} of {dataset.name!r} has no VQA questions to show.")
    pixels = dataset.images.get(image_ids).numpy()
    size = pixels.shape[1] * _SCALE
    font = _font()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = _TILE_WIDTH - 2 * _PAD
    # each caption line is a list of (text, ink) runs: the question in black, its answer in blue
    captions: list[list[list[tuple[str, tuple[int, int, int]]]]] = []
    for image_id in image_ids:
        lines = [[(f"image {image_id}", _LABEL_INK)]]
        for question, answer in questions[image_id]:
            wrapped = _wrap(scratch, f"{question}  {answer}", font, text_width)
            runs = [[(text, _QUESTION_INK)] for text in wrapped]
            last = wrapped[-1]
            head = last[: len(last) - len(answer)]
            runs[-1] = [(head, _QUESTION_INK), (answer, _ANSWER_INK)]
            lines += runs
        captions.append(lines)
    tile_height = _PAD + size + _PAD + _LINE * max(len(c) for c in captions) + _PAD
    cols = columns or min(len(image_ids), max(1, math.ceil(math.sqrt(len(image_ids)))))
    rows = math.ceil(len(image_ids) / cols)
    sheet = Image.new("RGB", (cols * _TILE_WIDTH, rows * tile_height), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (image_id, lines) in enumerate(zip(image_ids, captions)):
        x, y = (k % cols) * _TILE_WIDTH, (k // cols) * tile_height
        # nearest-neighbour upscaling keeps the pixels honest: what a reader sees is what a model gets
        picture = Image.fromarray(np.asarray(pixels[k], dtype=np.uint8)).resize((size, size), Image.NEAREST)
        sheet.paste(picture, (x + (_TILE_WIDTH - size) // 2, y + _PAD))
        ty = y + _PAD + size + _PAD
        for runs in lines:
            tx = x + _PAD
            for text, ink in runs:
                draw.text((tx, ty), text, fill=ink, font=font)
                tx += draw.textlength(text, font=font)
            ty += _LINE
        draw.rectangle([x, y, x + _TILE_WIDTH - 1, y + tile_height - 1], outline=(210, 210, 210))
    return sheet


def save_grid(dataset: VLDataset, out: str | os.PathLike, split: str = "test", n: int = 16) -> Path:
    """Write :func:`render_grid` as a PNG atomically; returns the path."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DataError(f"--out {str(out)!r} must end in .png.")
    buffer = io.BytesIO()
    render_grid(dataset, split=split, n=n).save(buffer, format="PNG")
    try:
        return atomic_write_bytes(out, buffer.getvalue())
    except OSError as exc:
        raise DataError(f"cannot write {str(out)!r}: {exc.strerror or exc}.") from exc
