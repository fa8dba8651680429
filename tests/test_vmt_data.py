"""The shapes world's English->German pairs: hand-checked German agreement and masked-source recoverability."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vlbench.data.shapes.tables import SplitScenes
from vlbench.data.shapes.translation import (
    MASK,
    candidate_sentences,
    german_np,
    make_vmt_table,
)
from vlbench.data.shapes.world import COLORS, SHAPES, Scene, ShapeObject, sample_scenes
from vlbench.tasks.generation import TargetVocab


def _obj(shape: str, color: str, size: str, row: int, col: int) -> ShapeObject:
    return ShapeObject(shape, color, size, row, col, (col * 16, row * 16, col * 16 + 9, row * 16 + 9))


def _scene(*objects: ShapeObject) -> Scene:
    return Scene(tuple(sorted(objects, key=lambda o: (o.row, o.col))), (240, 240, 240))


@pytest.mark.parametrize(
    "obj, article, case, expected",
    [
        (_obj("circle", "red", "small", 0, 0), "indef", "nom", "ein kleiner roter Kreis"),
        (_obj("circle", "red", "small", 0, 0), "indef", "acc", "einen kleinen roten Kreis"),
        (_obj("circle", "red", "small", 0, 0), "indef", "dat", "einem kleinen roten Kreis"),
        (_obj("circle", "purple", "large", 0, 0), "def", "nom", "der große violette Kreis"),
        (_obj("circle", "green", "large", 0, 0), "def", "dat", "dem großen grünen Kreis"),
        (_obj("square", "blue", "large", 0, 0), "indef", "nom", "ein großes blaues Quadrat"),
        (_obj("square", "blue", "large", 0, 0), "indef", "acc", "ein großes blaues Quadrat"),
        (_obj("triangle", "yellow", "small", 0, 0), "indef", "dat", "einem kleinen gelben Dreieck"),
        (_obj("triangle", "yellow", "small", 0, 0), "def", "nom", "das kleine gelbe Dreieck"),
    ],
)
def test_german_noun_phrases_agree(obj: ShapeObject, article: str, case: str, expected: str) -> None:
    assert german_np(obj, article, case) == expected


def test_hand_checked_sentences() -> None:
    red = _obj("circle", "red", "large", 0, 0)
    blue = _obj("square", "blue", "small", 2, 0)
    pairs = {(s.template, s.source): (s.source_masked, s.target) for s in candidate_sentences(_scene(red, blue))}
    assert pairs[("relation_indef", "A large red circle is above a small blue square.")] == (
        "A large [MASK] [MASK] is above a small [MASK] [MASK].",
        "Ein großer roter Kreis ist über einem kleinen blauen Quadrat.",
    )
    assert pairs[("relation_def", "The small blue square is below the large red circle.")] == (
        "The small [MASK] [MASK] is below the large [MASK] [MASK].",
        "Das kleine blaue Quadrat ist unter dem großen roten Kreis.",
    )
    assert pairs[("corner", "There is a large red circle in the top left corner.")] == (
        "There is a large [MASK] [MASK] in the top left corner.",
        "Es gibt einen großen roten Kreis in der oberen linken Ecke.",
    )
    assert pairs[("corner", "There is a small blue square in the bottom left corner.")][1] == (
        "Es gibt ein kleines blaues Quadrat in der unteren linken Ecke."
    )
    # no left/right sentence: both objects are in the same column
    assert not any("left of" in src or "right of" in src for _, src in pairs)
    left = _obj("triangle", "green", "small", 3, 1)
    right = _obj("circle", "yellow", "small", 3, 3)
    targets = {s.source: s.target for s in candidate_sentences(_scene(left, right))}
    assert targets["The small green triangle is to the left of the small yellow circle."] == (
        "Das kleine grüne Dreieck ist links vom kleinen gelben Kreis."
    )
    assert targets["A small yellow circle is to the right of a small green triangle."] == (
        "Ein kleiner gelber Kreis ist rechts von einem kleinen grünen Dreieck."
    )


def test_ambiguous_masked_sources_are_not_generated() -> None:
    # two small objects of different kinds are both above the large one: "a small [MASK] [MASK] is above a
    # large [MASK] [MASK]" could mean either, so no such sentence; the corners still identify each object
    a = _obj("circle", "red", "small", 0, 0)
    b = _obj("square", "blue", "small", 0, 3)
    big = _obj("triangle", "green", "large", 3, 1)
    sources = [s.source for s in candidate_sentences(_scene(a, b, big))]
    assert not any(s.startswith(("A small", "The small")) and "above" in s for s in sources)
    assert "There is a small red circle in the top left corner." in sources
    assert "There is a small blue square in the top right corner." in sources
    # identical twins leave nothing to guess: the fillers are the same whichever object is meant
    t1, t2 = _obj("circle", "red", "small", 0, 0), _obj("circle", "red", "small", 0, 1)
    big2 = _obj("square", "blue", "large", 2, 0)
    sources = [s.source for s in candidate_sentences(_scene(t1, t2, big2))]
    assert "A small red circle is above a large blue square." in sources


def _unmask(masked: str, words: list[str]) -> str:
    it = iter(words)
    return re.sub(re.escape(MASK), lambda _: next(it), masked)


_CORNER = re.compile(r"There is a (small|large) \[MASK\] \[MASK\] in the (top|bottom) (left|right) corner\.")
_RELATION = re.compile(
    r"(?:A|The) (small|large) \[MASK\] \[MASK\] is (above|below|to the left of|to the right of) (?:a|the) (small|large) \[MASK\] \[MASK\]\."
)


def _fillings(masked: str, scene: Scene) -> set[tuple[str, ...]]:
    """Colour/shape words of every reading of a masked sentence that is true of the scene."""
    objs = scene.objects
    if m := _CORNER.fullmatch(masked):
        size, vert, horiz = m.groups()
        row_half, col_half = (0 if vert == "top" else 1), (0 if horiz == "left" else 1)
        return {(o.color, o.shape) for o in objs if o.size == size and o.row // 2 == row_half and o.col // 2 == col_half}
    m = _RELATION.fullmatch(masked)
    assert m, masked
    size_a, rel, size_b = m.groups()
    test = {"above": lambda p, q: p.row < q.row, "below": lambda p, q: p.row > q.row,
            "to the left of": lambda p, q: p.col < q.col, "to the right of": lambda p, q: p.col > q.col}[rel]
    return {(p.color, p.shape, q.color, q.shape) for p in objs for q in objs
            if p is not q and p.size == size_a and q.size == size_b and test(p, q)}


def test_generated_pairs_are_consistent_and_recoverable() -> None:
    rng = np.random.default_rng(5)
    scenes = sample_scenes(rng, 300)
    table = make_vmt_table(SplitScenes("train", scenes, list(range(300))), None, np.random.default_rng(6))
    rows = table.to_dict()
    assert len(rows["pair_id"]) > 500 and len(set(rows["pair_id"])) == len(rows["pair_id"])
    vocab = TargetVocab.build(rows["target"])
    for image_id, src, masked, tgt in zip(rows["image_id"], rows["source"], rows["source_masked"], rows["target"]):
        scene = scenes[image_id]
        words = [w.strip(".") for w in src.split()]
        content = [w for w in words if w in COLORS or w in SHAPES]
        assert masked.count(MASK) == len(content) in (2, 4)
        assert not any(w in masked for w in COLORS + SHAPES)
        assert _unmask(masked, content) == src
        assert vocab.decode(vocab.encode(tgt, 40)[1:]) == tgt
        # recoverable: every way of filling the masks with objects of this image that keeps the masked
        # sentence true (read here from the English text itself) fills in the same words
        assert _fillings(masked, scene) == {tuple(content)}


def test_table_is_deterministic() -> None:
    scenes = sample_scenes(np.random.default_rng(1), 50)
    split = SplitScenes("val", scenes, [1_000_000 + i for i in range(50)])
    a = make_vmt_table(split, None, np.random.default_rng(3)).to_dict()
    b = make_vmt_table(split, None, np.random.default_rng(3)).to_dict()
    assert a == b
    assert all(p // 10 == i for p, i in zip(a["pair_id"], a["image_id"]))
