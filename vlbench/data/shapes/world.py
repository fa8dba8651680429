"""The shapes world: its vocabulary, scene objects and deterministic scene sampling.

Objects sit on a 4x4 grid of 16-pixel cells, at most one per cell, so that a ViLT-style 16-pixel
patch sees exactly one object: that alignment is what lets a tiny transformer trained from scratch
learn the world within a CPU-minutes budget.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "COLORS",
    "SHAPES",
    "SIZES",
    "SIZE_PIXELS",
    "MAX_JITTER",
    "GRID",
    "CELL",
    "IMAGE_SIZE",
    "MIN_OBJECTS",
    "MAX_OBJECTS",
    "MAX_COUNT",
    "ShapeObject",
    "Scene",
    "CountIntent",
    "sample_count_intent",
    "sample_scene",
    "sample_scenes",
]

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
# side of an object's bounding box in pixels
SIZE_PIXELS: dict[str, int] = {"small": 10, "large": 14}
# objects sit near their cell's centre, moved by at most this many pixels each way: enough that no two
# images of a shape are pixel-identical, small enough that a linear patch embedding still sees a template
MAX_JITTER = 2
GRID = 4
CELL = 16
IMAGE_SIZE = GRID * CELL
MIN_OBJECTS = 2
MAX_OBJECTS = 5
# counting answers run 0..MAX_COUNT; scenes where a count would exceed it simply get no such question
MAX_COUNT = 4


@dataclass(frozen=True)
class ShapeObject:
    """One object: what it is (shape, colour, size) and where (grid cell and pixel bbox x0, y0, x1, y1)."""

    shape: str
    color: str
    size: str
    row: int
    col: int
    bbox: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """Colour and shape, e.g. 'red circle'."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """All objects of one image (sorted row-major) and its light background colour."""

    objects: tuple[ShapeObject, ...]
    background: tuple[int, int, int]

    def to_json(self) -> str:
        """Compact JSON kept in the images table so that later tasks (captions, retrieval, vmt) can reuse it."""
        payload = {
            "objects": [{**asdict(o), "bbox": list(o.bbox)} for o in self.objects],
            "background": list(self.background),
        }
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> "Scene":
        """Inverse of :meth:`to_json`."""
        data = json.loads(text) if isinstance(text, str) else text
        objects = tuple(
            ShapeObject(
                shape=o["shape"],
                color=o["color"],
                size=o["size"],
                row=int(o["row"]),
                col=int(o["col"]),
                bbox=tuple(int(v) for v in o["bbox"]),  # type: ignore[arg-type]
            )
            for o in data["objects"]
        )
        return cls(objects=objects, background=tuple(int(v) for v in data["background"]))  # type: ignore[arg-type]

    def count(self, *, color: str | None = None, shape: str | None = None) -> int:
        """Number of objects matching the given colour and/or shape."""
        return sum(1 for o in self.objects if (color is None or o.color == color) and (shape is None or o.shape == shape))


@dataclass(frozen=True)
class CountIntent:
    """A scene built to contain exactly ``count`` objects whose ``kind`` attribute equals ``value``.

    Uniform scenes almost never hold 3 or 4 objects of one colour, so counting answers could not be
    balanced per question without throwing most questions away; intents supply the rare counts.
    """

    kind: str  # "color" or "shape"
    value: str
    count: int


# weights of the intended count 0..4: low counts are plentiful in every scene anyway, high ones are not
_INTENT_COUNT_WEIGHTS = np.array([0.5, 0.5, 1.0, 1.5, 1.5])


def sample_count_intent(rng: np.random.Generator) -> CountIntent:
    """A random count intent over every counting question (colour or shape, value, count)."""
    n_colors, n_shapes = len(COLORS), len(SHAPES)
    pick = int(rng.integers(n_colors + n_shapes))
    kind, value = ("color", COLORS[pick]) if pick < n_colors else ("shape", SHAPES[pick - n_colors])
    count = int(rng.choice(MAX_COUNT + 1, p=_INTENT_COUNT_WEIGHTS / _INTENT_COUNT_WEIGHTS.sum()))
    return CountIntent(kind, value, count)


def _other(rng: np.random.Generator, vocab: Sequence[str], exclude: str | None) -> str:
    choices = [v for v in vocab if v != exclude]
    return choices[int(rng.integers(len(choices)))]


def sample_scene(rng: np.random.Generator, intent: CountIntent | None = None) -> Scene:
    """Sample one scene (optionally satisfying a count intent) with every draw taken from ``rng``."""
    low = max(MIN_OBJECTS, intent.count if intent else 0)
    n = int(rng.integers(low, MAX_OBJECTS + 1))
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    objects = []
    for i, cell in enumerate(sorted(int(c) for c in cells)):
        # which objects carry the intended attribute is random, not tied to the grid order
        color = COLORS[int(rng.integers(len(COLORS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        size = SIZES[int(rng.integers(len(SIZES)))]
        px = SIZE_PIXELS[size]
        row, col = divmod(cell, GRID)
        slack = (CELL - px) // 2
        jitter = min(MAX_JITTER, slack)
        x0 = col * CELL + slack + int(rng.integers(-jitter, jitter + 1))
        y0 = row * CELL + slack + int(rng.integers(-jitter, jitter + 1))
        objects.append([shape, color, size, row, col, (x0, y0, x0 + px, y0 + px)])
    if intent is not None:
        carriers = set(int(i) for i in rng.choice(n, size=intent.count, replace=False))
        slot = 1 if intent.kind == "color" else 0
        vocab = COLORS if intent.kind == "color" else SHAPES
        for i, obj in enumerate(objects):
            obj[slot] = intent.value if i in carriers else _other(rng, vocab, intent.value)
    background = tuple(int(v) for v in rng.integers(222, 250, size=3))
    return Scene(tuple(ShapeObject(*obj) for obj in objects), background)  # type: ignore[arg-type]


def sample_scenes(rng: np.random.Generator, n: int, intent_fraction: float = 1.0) -> list[Scene]:
    """``n`` scenes; a fraction ``intent_fraction`` of them is built around a random count intent."""
    scenes = []
    for _ in range(n):
        intent = sample_count_intent(rng) if rng.random() < intent_fraction else None
        scenes.append(sample_scene(rng, intent))
    return scenes
