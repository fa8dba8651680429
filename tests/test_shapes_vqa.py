"""Shapes VQA: answers agree with the scene, per-question balance, annotation realism and format."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from vlbench.data.shapes.build import ShapesOptions, generate_shapes
from vlbench.data.shapes.noise import annotate
from vlbench.data.vqa_format import annotations_list
from vlbench.metrics.vqa import normalize_answer, vqa_evaluate

COLORS = ["red", "green", "blue", "yellow", "purple"]
SHAPES = ["circle", "square", "triangle"]
# the family of each question, recognised from its wording, with the answers it can have
FAMILY_ANSWERS = {
    "color": COLORS,
    "shape": SHAPES,
    "count": ["0", "1", "2", "3", "4"],
    "exist": ["yes", "no"],
    "relation": ["yes", "no"],
}
OFFICIAL_TYPES = {
    "color": ("what color is the", "other"),
    "shape": ("what shape is the", "other"),
    "count": ("how many", "number"),
    "exist": ("is there a", "yes/no"),
    "relation": ("is the", "yes/no"),
}
NAME = r"(red|green|blue|yellow|purple) (circle|square|triangle)"


def truth_from_scene(question: str, scene: dict) -> tuple[str, str]:
    """(family, answer) recomputed from the scene JSON, written independently of the generator."""
    objs = scene["objects"]
    if m := re.fullmatch(r"What color is the (\w+)\?", question):
        hits = [o for o in objs if o["shape"] == m[1]]
        assert len(hits) == 1, "the question must identify one object"
        return "color", hits[0]["color"]
    if m := re.fullmatch(r"What shape is the (\w+) object\?", question):
        hits = [o for o in objs if o["color"] == m[1]]
        assert len(hits) == 1
        return "shape", hits[0]["shape"]
    if m := re.fullmatch(r"How many (\w+) objects are there\?", question):
        return "count", str(sum(o["color"] == m[1] for o in objs))
    if m := re.fullmatch(r"How many (\w+)s are there\?", question):
        return "count", str(sum(o["shape"] == m[1] for o in objs))
    if m := re.fullmatch(r"Is there a (\w+) (\w+)\?", question):
        return "exist", "yes" if any(o["color"] == m[1] and o["shape"] == m[2] for o in objs) else "no"
    if m := re.fullmatch(rf"Is the {NAME} (to the left of|to the right of|above|below) the {NAME}\?", question):
        a = [o for o in objs if o["color"] == m[1] and o["shape"] == m[2]]
        b = [o for o in objs if o["color"] == m[4] and o["shape"] == m[5]]
        assert len(a) == 1 and len(b) == 1
        a, b = a[0], b[0]
        # compare pixel centres: a grid-based answer must agree with what the picture shows
        ax, ay = (a["bbox"][0] + a["bbox"][2]) / 2, (a["bbox"][1] + a["bbox"][3]) / 2
        bx, by = (b["bbox"][0] + b["bbox"][2]) / 2, (b["bbox"][1] + b["bbox"][3]) / 2
        holds = {"to the left of": ax < bx, "to the right of": ax > bx, "above": ay < by, "below": ay > by}[m[3]]
        axis = "col" if "left" in m[3] or "right" in m[3] else "row"
        assert a[axis] != b[axis], "relations are only asked between different columns (rows)"
        return "relation", "yes" if holds else "no"
    raise AssertionError(f"unexpected question wording: {question!r}")


@pytest.fixture(scope="module")
def generated():
    return generate_shapes(ShapesOptions(seed=11, train_images=240, val_images=60, test_images=60))


@pytest.fixture(scope="module")
def scenes(generated) -> dict[int, dict]:
    cols = generated.images.select_columns(["image_id", "scene"]).to_dict()
    return {i: json.loads(s) for i, s in zip(cols["image_id"], cols["scene"])}


def _rows(generated, split: str) -> list[dict]:
    return generated.tables["vqa"][split].to_list()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_answers_match_the_scene(generated, scenes, split) -> None:
    rows = _rows(generated, split)
    assert rows, "every split has questions"
    for row in rows:
        family, truth = truth_from_scene(row["question"], scenes[row["image_id"]])
        assert row["multiple_choice_answer"] == truth, row
        assert (row["question_type"], row["answer_type"]) == OFFICIAL_TYPES[family]
        assert row["question"].lower().startswith(row["question_type"])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_answers_balanced_per_question_string(generated, scenes, split) -> None:
    per_string: dict[str, Counter] = defaultdict(Counter)
    family_of = {}
    for row in _rows(generated, split):
        per_string[row["question"]][row["multiple_choice_answer"]] += 1
        family_of[row["question"]] = truth_from_scene(row["question"], scenes[row["image_id"]])[0]
    assert len(per_string) > 20
    for question, counts in per_string.items():
        expected = FAMILY_ANSWERS[family_of[question]]
        # every answer of the family, each exactly as often: the string itself carries no information
        assert set(counts) == set(expected), (question, counts)
        assert len(set(counts.values())) == 1, (question, counts)


def test_ids_unique_and_several_questions_per_image(generated) -> None:
    image_ids = generated.images["image_id"][:]
    assert len(set(image_ids)) == len(image_ids)
    qids = [q for split in ("train", "val", "test") for q in generated.tables["vqa"][split]["question_id"][:]]
    assert len(set(qids)) == len(qids)
    per_image = Counter(generated.tables["vqa"]["train"]["image_id"][:])
    assert np.mean(list(per_image.values())) > 3
    families = {r["question_type"] for r in _rows(generated, "train")}
    assert families == {t for t, _ in OFFICIAL_TYPES.values()}


def test_annotation_format_and_noise(generated) -> None:
    rows = _rows(generated, "train")
    agree = []
    noisy_surface = 0
    for row in rows:
        assert len(row["answers"]) == 10 and len(row["answer_confidence"]) == 10
        assert set(row["answer_confidence"]) <= {"yes", "maybe", "no"}
        normalized = [normalize_answer(a) for a in row["answers"]]
        counts = Counter(normalized)
        # multiple_choice_answer is the most common normalized answer, and strictly so
        top = counts.most_common(2)
        assert top[0][0] == row["multiple_choice_answer"]
        assert len(top) == 1 or top[1][1] < top[0][1]
        agree.append(counts[row["multiple_choice_answer"]])
        noisy_surface += sum(a != n for a, n in zip(row["answers"], normalized))
        if len(set(row["answers"])) == 1:
            # the official evaluator does not normalize unanimous answers: they must already be clean
            assert row["answers"][0] == normalize_answer(row["answers"][0])
    agree = np.array(agree)
    assert 0.65 < np.mean(agree >= 8) < 0.9, "most questions 8-10 agreeing"
    assert 0.08 < np.mean((agree >= 5) & (agree <= 7)) < 0.3, "some 5-7"
    assert 0.0 < np.mean(agree <= 4) < 0.12, "a few ambiguous"
    assert noisy_surface > 0.05 * 10 * len(rows), "surface noise present so that normalization matters"


def test_disagreements_are_plausible() -> None:
    truths = ["red"] * 300 + ["2"] * 300 + ["yes"] * 300 + ["circle"] * 300
    families = ["color"] * 300 + ["count"] * 300 + ["exist"] * 300 + ["shape"] * 300
    notes = annotate(truths, families, np.random.default_rng(0))
    wrong: dict[str, Counter] = defaultdict(Counter)
    for truth, note in zip(truths, notes):
        for answer in note.answers:
            norm = normalize_answer(answer)
            if norm != truth:
                wrong[truth][norm] += 1
    assert set(wrong["2"]) <= {"0", "1", "3", "4"} and wrong["2"]["1"] + wrong["2"]["3"] > wrong["2"]["0"] + wrong["2"]["4"]
    assert set(wrong["yes"]) == {"no"}
    assert {"orange", "pink"} <= set(wrong["red"])
    assert set(wrong["circle"]) <= {"oval", "ball", "square", "triangle"}
    spellings = {a for note in notes[300:600] for a in note.answers}
    assert {"two", "2"} <= {s.strip(" .!").lower() for s in spellings}


def test_perfect_model_scores_high(generated) -> None:
    test = generated.tables["vqa"]["test"]
    preds = [{"question_id": q, "answer": a} for q, a in zip(test["question_id"][:], test["multiple_choice_answer"][:])]
    result = vqa_evaluate(preds, annotations_list(test))
    assert 97.0 <= result["overall"] < 100.0
    # surface forms are scored through the official normalization (a raw exact match would score far lower)
    shouted = [{"question_id": p["question_id"], "answer": p["answer"].upper() + "."} for p in preds]
    assert vqa_evaluate(shouted, annotations_list(test))["overall"] > 90.0


def test_question_mix_overrides_family_shares() -> None:
    sizes = dict(seed=11, train_images=120, val_images=20, test_images=20)
    default = Counter(generate_shapes(ShapesOptions(**sizes)).tables["vqa"]["train"]["question_type"][:])
    mixed = generate_shapes(ShapesOptions(**sizes, question_mix={"relation": 0, "count": 0.5}))
    types = Counter(mixed.tables["vqa"]["train"]["question_type"][:])
    assert "is the" not in types and default["is the"] > 0, "a zero share drops the family"
    # counting asks for twice its default share (availability under exact balance may cap it)
    assert types["how many"] > default["how many"]
