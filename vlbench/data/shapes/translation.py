"""English -> German sentence pairs about shapes-world images, full and entity-masked.

Every pair describes one or two objects of its image (``a small red circle is above a large blue
square.``) and its German translation, where the noun's gender and the case of its phrase decide the
article and the adjective endings (``ein kleiner roter Kreis`` / ``ein kleines rotes Quadrat`` /
``über einem großen blauen Quadrat`` / ``Es gibt einen kleinen roten Kreis``). The target therefore
depends on which objects are meant, word by word.

Two sources per pair (both reported, in the spirit of Caglayan et al. 2019, "Probing the Need for
Visual Context in Multimodal Machine Translation"):

* ``source``: the full English sentence. Translating it needs no image (as on Multi30k).
* ``source_masked``: the same sentence with every colour and shape word replaced by ``[MASK]``. Only
  the image can recover them: a pair is kept only when the unmasked words (sizes, relation, corner)
  pick out objects whose colours and shapes are unique in the image, so a perfect multimodal model
  translates the masked source exactly while a text-only one can only guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset, Features, Value

from vlbench.data.shapes.tables import SplitScenes, register_table
from vlbench.data.shapes.world import GRID, Scene, ShapeObject

if TYPE_CHECKING:
    from vlbench.data.shapes.build import ShapesOptions

__all__ = [
    "MASK",
    "PAIRS_PER_IMAGE",
    "VMT_FEATURES",
    "COLOR_DE",
    "NOUN_DE",
    "SIZE_DE",
    "Sentence",
    "german_np",
    "candidate_sentences",
    "make_vmt_table",
]

# BERT-family tokenizers keep their mask token whole ("[v]", Caglayan et al.'s marker, would be 3 pieces)
MASK = "[MASK]"
PAIRS_PER_IMAGE = 2
# pair ids are image_id * PAIR_ID_STRIDE + rank
PAIR_ID_STRIDE = 10
VMT_FEATURES = Features(
    {
        "pair_id": Value("int64"),
        "image_id": Value("int64"),
        "template": Value("string"),
        "source": Value("string"),
        "source_masked": Value("string"),
        "target": Value("string"),
    }
)

COLOR_DE = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett"}
SIZE_DE = {"small": "klein", "large": "groß"}
# noun and grammatical gender (m, f, n)
NOUN_DE = {"circle": ("Kreis", "m"), "square": ("Quadrat", "n"), "triangle": ("Dreieck", "n")}
# article and adjective ending by (article kind, case, gender); mixed declension after "ein", weak after "der"
_ARTICLE = {
    ("indef", "nom"): {"m": "ein", "f": "eine", "n": "ein"},
    ("indef", "acc"): {"m": "einen", "f": "eine", "n": "ein"},
    ("indef", "dat"): {"m": "einem", "f": "einer", "n": "einem"},
    ("def", "nom"): {"m": "der", "f": "die", "n": "das"},
    ("def", "dat"): {"m": "dem", "f": "der", "n": "dem"},
}
_ENDING = {
    ("indef", "nom"): {"m": "er", "f": "e", "n": "es"},
    ("indef", "acc"): {"m": "en", "f": "e", "n": "es"},
    ("indef", "dat"): {"m": "en", "f": "en", "n": "en"},
    ("def", "nom"): {"m": "e", "f": "e", "n": "e"},
    ("def", "dat"): {"m": "en", "f": "en", "n": "en"},
}
# relation -> (axis, sign, English phrase, German preposition); "A rel B" holds when sign * (A - B) > 0
_RELATIONS = {
    "above": ("row", -1, "above", "über"),
    "below": ("row", 1, "below", "unter"),
    "left": ("col", -1, "to the left of", "links von"),
    "right": ("col", 1, "to the right of", "rechts von"),
}
_CORNERS = {(0, 0): ("top left", "oberen linken"), (0, 1): ("top right", "oberen rechten"),
            (1, 0): ("bottom left", "unteren linken"), (1, 1): ("bottom right", "unteren rechten")}


def german_np(o: ShapeObject, article: str, case: str, *, with_article: bool = True) -> str:
    """German noun phrase with agreeing article and adjectives, e.g. ``einem kleinen roten Kreis``."""
    noun, gender = NOUN_DE[o.shape]
    ending = _ENDING[(article, case)][gender]
    words = [f"{SIZE_DE[o.size]}{ending}", f"{COLOR_DE[o.color]}{ending}", noun]
    if with_article:
        words.insert(0, _ARTICLE[(article, case)][gender])
    return " ".join(words)


def _english_np(o: ShapeObject, masked: bool) -> str:
    color, shape = (MASK, MASK) if masked else (o.color, o.shape)
    return f"{o.size} {color} {shape}"


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Sentence:
    """One candidate pair: template, the objects it mentions, English (full and masked) and German."""

    template: str
    objects: tuple[ShapeObject, ...]
    source: str
    source_masked: str
    target: str


def _holds(a: ShapeObject, b: ShapeObject, relation: str) -> bool:
    axis, sign, _, _ = _RELATIONS[relation]
    return sign * (getattr(a, axis) - getattr(b, axis)) > 0


def _corner(o: ShapeObject) -> tuple[int, int]:
    half = GRID // 2
    return o.row // half, o.col // half


def _relation_sentence(a: ShapeObject, b: ShapeObject, relation: str, article: str) -> Sentence:
    _, _, en_rel, de_rel = _RELATIONS[relation]
    en_art = "a" if article == "indef" else "the"

    def english(masked: bool) -> str:
        return _cap(f"{en_art} {_english_np(a, masked)} is {en_rel} {en_art} {_english_np(b, masked)}.")

    if article == "def" and de_rel.endswith(" von"):
        # "von dem" contracts to "vom" (both masculine and neuter dative take "dem")
        obj = de_rel[: -len(" von")] + " vom " + german_np(b, "def", "dat", with_article=False)
    else:
        obj = f"{de_rel} {german_np(b, article, 'dat')}"
    german = _cap(f"{german_np(a, article, 'nom')} ist {obj}.")
    return Sentence(f"relation_{article}", (a, b), english(False), english(True), german)


def _corner_sentence(o: ShapeObject) -> Sentence:
    en_corner, de_corner = _CORNERS[_corner(o)]

    def english(masked: bool) -> str:
        return f"There is a {_english_np(o, masked)} in the {en_corner} corner."

    german = f"Es gibt {german_np(o, 'indef', 'acc')} in der {de_corner} Ecke."
    return Sentence("corner", (o,), english(False), english(True), german)


def candidate_sentences(scene: Scene) -> list[Sentence]:
    """Every pair whose masked source still determines the target given the image."""
    objects = scene.objects
    out: list[Sentence] = []
    # corner: "a <size> [MASK] [MASK] in the <corner> corner" must match objects of one colour and shape
    for o in objects:
        fillers = {p.name for p in objects if p.size == o.size and _corner(p) == _corner(o)}
        if len(fillers) == 1:
            out.append(_corner_sentence(o))
    # relation: "<size> [MASK] [MASK] is <rel> <size> [MASK] [MASK]" must match pairs with one colour/shape filling
    for relation in _RELATIONS:
        for a in objects:
            for b in objects:
                if a is b or not _holds(a, b, relation):
                    continue
                fillers = {
                    (p.name, q.name)
                    for p in objects
                    for q in objects
                    if p is not q and p.size == a.size and q.size == b.size and _holds(p, q, relation)
                }
                if len(fillers) == 1:
                    for article in ("indef", "def"):
                        out.append(_relation_sentence(a, b, relation, article))
    return out


_TEMPLATE_ORDER: tuple[str, ...] = ("corner", "relation_indef", "relation_def")


def _choose(candidates: list[Sentence], n: int, rng: np.random.Generator) -> list[Sentence]:
    """Up to ``n`` sentences, from different templates while possible, uniformly within a template."""
    by_template = {t: [c for c in candidates if c.template == t] for t in _TEMPLATE_ORDER}
    chosen: list[Sentence] = []
    used: set[str] = set()
    for _ in range(n):
        fresh = [t for t in _TEMPLATE_ORDER if by_template[t] and t not in used]
        pool_names = fresh or [t for t in _TEMPLATE_ORDER if by_template[t]]
        if not pool_names:
            break
        name = pool_names[int(rng.integers(len(pool_names)))]
        pool = by_template[name]
        pick = pool.pop(int(rng.integers(len(pool))))
        used.add(name)
        chosen.append(pick)
    return chosen


@register_table("vmt", version="2")
def make_vmt_table(split: SplitScenes, options: "ShapesOptions", rng: np.random.Generator) -> Dataset:
    """The vmt table of one split: up to two pairs per image, each with full and masked sources."""
    columns: dict[str, list[Any]] = {name: [] for name in VMT_FEATURES}
    for scene, image_id in zip(split.scenes, split.image_ids):
        for rank, s in enumerate(_choose(candidate_sentences(scene), PAIRS_PER_IMAGE, rng)):
            columns["pair_id"].append(int(image_id) * PAIR_ID_STRIDE + rank)
            columns["image_id"].append(int(image_id))
            columns["template"].append(s.template)
            columns["source"].append(s.source)
            columns["source_masked"].append(s.source_masked)
            columns["target"].append(s.target)
    return Dataset.from_dict(columns, features=VMT_FEATURES)
