"""Five human-like captions per shapes-world image, in COCO caption format.

Each image gets five captions written from five different templates (out of seven), with varied
wording the way COCO annotators vary theirs: listing the objects, counting them, summarising by shape
or colour, relating two of them, with or without sizes, capitalised or not, with or without a final
period. Objects are listed in reading order (row by row), so a caption is a function of the image;
no caption can be guessed without it beyond the generic "a red circle and a blue square".

The table has one row per caption (``caption_id``, ``image_id``, ``caption``); ``to_coco_captions``
writes a split as the official COCO captions annotation JSON that ``vlbench score`` reads.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from datasets import Dataset

from vlbench.data.shapes.tables import SplitScenes, register_table
from vlbench.data.shapes.world import Scene, ShapeObject

if TYPE_CHECKING:
    from vlbench.data.shapes.build import ShapesOptions

__all__ = [
    "CAPTIONS_PER_IMAGE",
    "CAPTION_FEATURES",
    "TEMPLATES",
    "caption_scene",
    "make_captions_table",
    "to_coco_captions",
    "write_coco_captions",
]

CAPTIONS_PER_IMAGE = 5
# caption ids are image_id * CAPTION_ID_STRIDE + rank, as unique as image ids are
CAPTION_ID_STRIDE = 10
from vlbench.data.coco_format import CAPTION_FEATURES  # noqa: E402

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")
_SIZE_WORDS = {"small": ("small", "small", "little"), "large": ("large", "large", "big")}


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def _np(o: ShapeObject, rng: np.random.Generator, *, sized: bool) -> str:
    size = f"{_pick(rng, _SIZE_WORDS[o.size])} " if sized else ""
    return f"a {size}{o.color} {o.shape}"


def _list(scene: Scene, rng: np.random.Generator) -> str:
    return _join([_np(o, rng, sized=False) for o in scene.objects])


def _sized_list(scene: Scene, rng: np.random.Generator) -> str:
    return _join([_np(o, rng, sized=True) for o in scene.objects])


def _count(scene: Scene, rng: np.random.Generator) -> str:
    head = _pick(rng, ("there are", "there are", "we can see"))
    noun = _pick(rng, ("shapes", "objects"))
    sized = bool(rng.random() < 0.3)
    return f"{head} {_NUMBER_WORDS[len(scene.objects)]} {noun}: " + _join([_np(o, rng, sized=sized) for o in scene.objects])


def _scene(scene: Scene, rng: np.random.Generator) -> str:
    head = f"{_pick(rng, ('an image', 'a picture', 'a drawing'))} {_pick(rng, ('of', 'showing', 'with'))}"
    sized = bool(rng.random() < 0.3)
    return f"{head} " + _join([_np(o, rng, sized=sized) for o in scene.objects])


def _by_shape(scene: Scene, rng: np.random.Generator) -> str:
    counts = Counter(o.shape for o in scene.objects)
    order = list(dict.fromkeys(o.shape for o in scene.objects))
    parts = [("a " if counts[s] == 1 else f"{_NUMBER_WORDS[counts[s]]} ") + _plural(s, counts[s]) for s in order]
    tail = _pick(rng, ("", "", " on a light background", " in a picture"))
    return _join(parts) + tail


def _by_color(scene: Scene, rng: np.random.Generator) -> str:
    noun = _pick(rng, ("shapes", "objects"))
    colors = _join(list(dict.fromkeys(o.color for o in scene.objects)))
    return f"{_NUMBER_WORDS[len(scene.objects)]} {noun} in {colors}"


def _relation(scene: Scene, rng: np.random.Generator) -> str:
    a, b = scene.objects[0], scene.objects[1]
    # objects are row-major, so the first is above the second or on its left in the same row
    phrase = "above" if a.row < b.row else "to the left of"
    text = f"{_np(a, rng, sized=False)} {phrase} {_np(b, rng, sized=False)}"
    rest = len(scene.objects) - 2
    if rest:
        text += f" and {_NUMBER_WORDS[rest]} more {_plural(_pick(rng, ('shape', 'object')), rest)}"
    return text


TEMPLATES: dict[str, Callable[[Scene, np.random.Generator], str]] = {
    "list": _list,
    "sized_list": _sized_list,
    "count": _count,
    "scene": _scene,
    "by_shape": _by_shape,
    "by_color": _by_color,
    "relation": _relation,
}
_TEMPLATE_NAMES = tuple(TEMPLATES)


def _surface(text: str, rng: np.random.Generator) -> str:
    # annotators capitalise and punctuate inconsistently; the PTB tokenizer and lowercasing undo both
    if rng.random() < 0.6:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.7:
        text += "."
    return text


def caption_scene(scene: Scene, rng: np.random.Generator, n: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``n`` captions of one scene, each from a different template."""
    picks = rng.choice(len(_TEMPLATE_NAMES), size=min(n, len(_TEMPLATE_NAMES)), replace=False)
    return [_surface(TEMPLATES[_TEMPLATE_NAMES[int(i)]](scene, rng), rng) for i in picks]


@register_table("captions", version="1")
def make_captions_table(split: SplitScenes, options: "ShapesOptions", rng: np.random.Generator) -> Dataset:
    """The captions table of one split: five captions per image, one row each."""
    columns: dict[str, list[Any]] = {"caption_id": [], "image_id": [], "caption": []}
    for scene, image_id in zip(split.scenes, split.image_ids):
        for rank, caption in enumerate(caption_scene(scene, rng)):
            columns["caption_id"].append(int(image_id) * CAPTION_ID_STRIDE + rank)
            columns["image_id"].append(int(image_id))
            columns["caption"].append(caption)
    return Dataset.from_dict(columns, features=CAPTION_FEATURES)


# the COCO captions annotation format is not specific to the shapes world; it lives in vlbench.data.coco_format
from vlbench.data.coco_format import to_coco_captions, write_coco_captions  # noqa: E402,F401
