"""VQA questions about shapes-world scenes, chosen so that no question string reveals its answer.

Every scene yields many candidate (question, answer) pairs. Per split, and per exact question string,
the same number of questions is kept for every answer of that question's family (in the spirit of
VQAv2's complementary pairs), so the best a text-only model can do is the uniform prior.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from datasets import Dataset

from vlbench.data.shapes.noise import annotate
from vlbench.data.shapes.tables import SplitScenes, register_table
from vlbench.data.shapes.world import COLORS, MAX_COUNT, SHAPES, Scene
from vlbench.data.vqa_format import VQA_FEATURES

if TYPE_CHECKING:
    from vlbench.data.shapes.build import ShapesOptions

__all__ = [
    "Family",
    "FAMILIES",
    "DEFAULT_SHARES",
    "RELATIONS",
    "Candidate",
    "candidate_questions",
    "select_balanced",
    "QUESTIONS_PER_IMAGE_LIMIT",
    "make_vqa_table",
]


@dataclass(frozen=True)
class Family:
    """A kind of question: its official VQA question_type prefix, answer_type and closed answer set."""

    name: str
    question_type: str
    answer_type: str
    answers: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("color", "what color is the", "other", COLORS),
        Family("shape", "what shape is the", "other", SHAPES),
        Family("count", "how many", "number", tuple(str(i) for i in range(MAX_COUNT + 1))),
        Family("exist", "is there a", "yes/no", ("yes", "no")),
        Family("relation", "is the", "yes/no", ("yes", "no")),
    )
}
# share of each family among a split's questions (before balancing caps what is available)
DEFAULT_SHARES: dict[str, float] = {"color": 0.2, "shape": 0.15, "count": 0.25, "exist": 0.2, "relation": 0.2}
# phrase -> (axis, sign): "A <phrase> B" holds when sign * (A - B) > 0 along the axis (col or row)
RELATIONS: dict[str, tuple[str, int]] = {
    "to the left of": ("col", -1),
    "to the right of": ("col", 1),
    "above": ("row", -1),
    "below": ("row", 1),
}


@dataclass(frozen=True)
class Candidate:
    """A question that ``scene`` answers unambiguously, with its correct answer."""

    image_index: int
    family: str
    question: str
    answer: str


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def candidate_questions(scene: Scene, image_index: int) -> list[Candidate]:
    """Every unambiguous question about ``scene`` (objects referenced by a description unique in it)."""
    out: list[Candidate] = []
    shape_counts = Counter(o.shape for o in scene.objects)
    color_counts = Counter(o.color for o in scene.objects)
    name_counts = Counter(o.name for o in scene.objects)
    for o in scene.objects:
        if shape_counts[o.shape] == 1:
            out.append(Candidate(image_index, "color", f"What color is the {o.shape}?", o.color))
        if color_counts[o.color] == 1:
            out.append(Candidate(image_index, "shape", f"What shape is the {o.color} object?", o.shape))
    for color in COLORS:
        if color_counts[color] <= MAX_COUNT:
            out.append(Candidate(image_index, "count", f"How many {color} objects are there?", str(color_counts[color])))
    for shape in SHAPES:
        if shape_counts[shape] <= MAX_COUNT:
            out.append(Candidate(image_index, "count", f"How many {shape}s are there?", str(shape_counts[shape])))
    for color in COLORS:
        for shape in SHAPES:
            out.append(Candidate(image_index, "exist", f"Is there a {color} {shape}?", _yes(name_counts[f"{color} {shape}"] > 0)))
    unique = [o for o in scene.objects if name_counts[o.name] == 1]
    for a in unique:
        for b in unique:
            if a is b:
                continue
            for phrase, (axis, sign) in RELATIONS.items():
                delta = getattr(a, axis) - getattr(b, axis)
                # same row (column) makes left/right (above/below) a matter of pixels: not asked
                if delta == 0:
                    continue
                out.append(Candidate(image_index, "relation", f"Is the {a.name} {phrase} the {b.name}?", _yes(sign * delta > 0)))
    return out


def _quotas(available: Mapping[str, int], n_answers: int, target: int, rng: np.random.Generator) -> dict[str, int]:
    """Per-string count of questions per answer, spread round-robin over strings until ``target`` is met."""
    order = [s for s in sorted(available) if available[s] > 0]
    order = [order[i] for i in rng.permutation(len(order))]
    quota = dict.fromkeys(order, 0)
    total = 0
    while total < target:
        progressed = False
        for s in order:
            if total >= target:
                break
            if quota[s] < available[s]:
                quota[s] += 1
                total += n_answers
                progressed = True
        if not progressed:
            break
    return quota


def select_balanced(
    candidates: Sequence[Candidate],
    n_images: int,
    questions_per_image: float,
    rng: np.random.Generator,
    shares: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Pick about ``questions_per_image`` questions per image, exactly balanced over answers per question string.

    For each string the same number of questions is kept for every answer of its family; strings
    missing some answer are dropped. Within that constraint, questions go to the images that have the
    fewest so far, so every image gets several.
    """
    # given shares override the defaults family by family (0 drops a family)
    shares = {**DEFAULT_SHARES, **(shares or {})}
    weight = sum(shares.values())
    groups: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for c in candidates:
        groups[c.family][c.question][c.answer].append(c.image_index)
    load = np.zeros(n_images, dtype=np.int64)
    chosen: list[Candidate] = []
    for name, family in FAMILIES.items():
        if shares.get(name, 0) <= 0:
            continue
        target = int(round(n_images * questions_per_image * shares[name] / weight))
        by_string = groups.get(name, {})
        available = {s: min(len(by_answer.get(a, ())) for a in family.answers) for s, by_answer in by_string.items()}
        quota = _quotas(available, len(family.answers), target, rng)
        for question, q in quota.items():
            if q == 0:
                continue
            for answer in family.answers:
                pool = np.array(by_string[question][answer], dtype=np.int64)
                pool = pool[rng.permutation(len(pool))]
                # least-loaded images first; the random permutation breaks ties without bias
                picked = pool[np.argsort(load[pool], kind="stable")[:q]]
                load[picked] += 1
                chosen.extend(Candidate(int(i), name, question, answer) for i in picked)
    return chosen


# question ids are image_id * 100 + rank within the image, as VQA derives them from image ids
QUESTIONS_PER_IMAGE_LIMIT = 100
_FAMILY_ORDER = {name: i for i, name in enumerate(FAMILIES)}


@register_table("vqa", version="2")
def make_vqa_table(split: SplitScenes, options: "ShapesOptions", rng: np.random.Generator) -> Dataset:
    """The VQA table of one split: balanced questions, ten noisy annotator answers each."""
    select_rng, noise_rng = rng.spawn(2)
    candidates = [c for i, scene in enumerate(split.scenes) for c in candidate_questions(scene, i)]
    chosen = select_balanced(candidates, len(split.scenes), options.questions_per_image, select_rng, options.question_mix)
    chosen.sort(key=lambda c: (c.image_index, _FAMILY_ORDER[c.family], c.question))
    notes = annotate([c.answer for c in chosen], [c.family for c in chosen], noise_rng)
    columns: dict[str, list] = {name: [] for name in VQA_FEATURES}
    rank: dict[int, int] = {}
    for cand, note in zip(chosen, notes):
        image_id = int(split.image_ids[cand.image_index])
        r = rank.get(image_id, 0)
        if r >= QUESTIONS_PER_IMAGE_LIMIT:
            raise ValueError(f"image {image_id} got more than {QUESTIONS_PER_IMAGE_LIMIT} questions")
        rank[image_id] = r + 1
        family = FAMILIES[cand.family]
        columns["question_id"].append(image_id * QUESTIONS_PER_IMAGE_LIMIT + r)
        columns["image_id"].append(image_id)
        columns["question"].append(cand.question)
        columns["question_type"].append(family.question_type)
        columns["answer_type"].append(family.answer_type)
        columns["answers"].append(note.answers)
        columns["answer_confidence"].append(note.confidences)
        columns["multiple_choice_answer"].append(note.multiple_choice_answer)
    return Dataset.from_dict(columns, features=VQA_FEATURES)
