"""Image-text retrieval pairs: five differently worded captions per shapes-world image (COCO-style rows).

Retrieval needs captions that tell one image from the others in a test pool of a hundred or so, so each
caption names several objects by colour and shape and adds a size, a place on the grid, a relation or the
object count. The five captions of an image use five different templates (listing, relation, location,
counting, contrast), so they share content but not wording; synonyms vary the surface further.

One row per caption: ``caption_id`` (``image_id * 10 + k``), ``image_id``, ``caption``, ``template``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from datasets import Dataset, Features, Value

from vlbench.data.shapes.tables import SplitScenes, register_table
from vlbench.data.shapes.world import GRID, Scene, ShapeObject

if TYPE_CHECKING:
    from vlbench.data.shapes.build import ShapesOptions

__all__ = ["CAPTIONS_PER_IMAGE", "RETRIEVAL_FEATURES", "TEMPLATES", "caption_scene", "make_retrieval_table"]

CAPTIONS_PER_IMAGE = 5
RETRIEVAL_FEATURES = Features(
    {"caption_id": Value("int64"), "image_id": Value("int64"), "caption": Value("string"), "template": Value("string")}
)
_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
_SCENE_NOUN = ("image", "picture", "scene", "drawing")
_OBJECT_NOUN = ("objects", "shapes")
_RELATION_WORDS = {
    ("row", -1): ("above", "over"),
    ("row", 1): ("below", "under"),
    ("col", -1): ("to the left of", "left of"),
    ("col", 1): ("to the right of", "right of"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(o: ShapeObject, rng: np.random.Generator, size: bool | None = None) -> str:
    """'a small red circle' / 'a red circle' (the size is said about half the time unless forced)."""
    with_size = bool(rng.random() < 0.5) if size is None else size
    words = ([o.size] if with_size else []) + [o.color, o.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _place(o: ShapeObject) -> str:
    """Where an object sits: 'top left corner', 'bottom', 'middle', 'left side'..."""
    vertical = "top" if o.row == 0 else "bottom" if o.row == GRID - 1 else ""
    horizontal = "left" if o.col == 0 else "right" if o.col == GRID - 1 else ""
    if vertical and horizontal:
        return f"in the {vertical} {horizontal} corner"
    if vertical:
        return f"at the {vertical}"
    if horizontal:
        return f"on the {horizontal} side"
    return "in the middle"


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _listing(scene: Scene, rng: np.random.Generator) -> str:
    objs = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    lead = _pick(rng, (f"{_NUMBER[len(objs)]} {_pick(rng, _OBJECT_NOUN)}: ", "", "there is "))
    return lead + _join([_phrase(o, rng) for o in objs])


def _relation(scene: Scene, rng: np.random.Generator) -> str:
    names = Counter(o.name for o in scene.objects)
    pairs = [
        (a, b, axis, int(np.sign(getattr(a, axis) - getattr(b, axis))))
        for a in scene.objects for b in scene.objects
        if a is not b and names[a.name] == 1 and names[b.name] == 1
        for axis in ("row", "col") if getattr(a, axis) != getattr(b, axis)
    ]
    if not pairs:
        return _listing(scene, rng)
    a, b, axis, sign = pairs[int(rng.integers(len(pairs)))]
    rest = [o for o in scene.objects if o is not a and o is not b]
    text = f"{_phrase(a, rng)} {_pick(rng, _RELATION_WORDS[(axis, sign)])} {_phrase(b, rng)}"
    if rest:
        other = rest[int(rng.integers(len(rest)))]
        text += f" {_pick(rng, ('and', 'with', 'plus'))} {_phrase(other, rng)}"
    return text


def _location(scene: Scene, rng: np.random.Generator) -> str:
    k = min(len(scene.objects), 2 + int(rng.integers(2)))
    objs = [scene.objects[i] for i in sorted(rng.choice(len(scene.objects), size=k, replace=False))]
    parts = [f"{_phrase(o, rng)} {_place(o)}" for o in objs]
    return _pick(rng, (f"{_pick(rng, _SCENE_NOUN)} with ", "")) + _join(parts)


def _counting(scene: Scene, rng: np.random.Generator) -> str:
    by_color = Counter(o.color for o in scene.objects)
    by_shape = Counter(o.shape for o in scene.objects)
    groups = [f"{_NUMBER[n]} {c} {_pick(rng, _OBJECT_NOUN) if n > 1 else 'object'}" for c, n in sorted(by_color.items())]
    shapes = [f"{_NUMBER[n]} {s}{'s' if n > 1 else ''}" for s, n in sorted(by_shape.items())]
    order = rng.permutation(2)
    first, second = (groups, shapes) if order[0] == 0 else (shapes, groups)
    noun = _pick(rng, _SCENE_NOUN)
    determiner = _pick(rng, (_article(noun), "the", "this"))
    return f"{determiner} {noun} {_pick(rng, ('has', 'shows', 'contains'))} {_join(first)}; {_join(second)} in all"


def _contrast(scene: Scene, rng: np.random.Generator) -> str:
    large = [o for o in scene.objects if o.size == "large"]
    small = [o for o in scene.objects if o.size == "small"]
    parts = []
    for label, group in (("large", large), ("small", small)):
        if group:
            names = [o.name for o in group]
            parts.append(f"{label}: {_join(names)}")
        else:
            parts.append(f"nothing {label}")
    if rng.random() < 0.5:
        parts.reverse()
    return f"{_pick(rng, ('sizes', 'by size', 'big and small'))} - {'; '.join(parts)}"


TEMPLATES: dict[str, Callable[[Scene, np.random.Generator], str]] = {
    "listing": _listing,
    "relation": _relation,
    "location": _location,
    "counting": _counting,
    "contrast": _contrast,
}


def caption_scene(scene: Scene, rng: np.random.Generator, n: int = CAPTIONS_PER_IMAGE) -> list[tuple[str, str]]:
    """``n`` (template, caption) pairs for one scene, each from a different template, in random order."""
    names = list(TEMPLATES)
    order = [names[i] for i in rng.permutation(len(names))][:n]
    out = []
    for name in order:
        text = TEMPLATES[name](scene, rng)
        out.append((name, text[0].upper() + text[1:] + "."))
    return out


@register_table("retrieval", version="1")
def make_retrieval_table(split: SplitScenes, options: "ShapesOptions", rng: np.random.Generator) -> Dataset:
    """One split's retrieval captions: five per image, one row per caption (COCO annotation style)."""
    columns: dict[str, list] = {name: [] for name in RETRIEVAL_FEATURES}
    for scene, image_id in zip(split.scenes, split.image_ids):
        for k, (template, caption) in enumerate(caption_scene(scene, rng)):
            columns["caption_id"].append(int(image_id) * 10 + k)
            columns["image_id"].append(int(image_id))
            columns["caption"].append(caption)
            columns["template"].append(template)
    return Dataset.from_dict(columns, features=RETRIEVAL_FEATURES)
