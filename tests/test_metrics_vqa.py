"""VQA accuracy against values produced by the official vqaEval.py (see tests/data/metrics/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlbench.errors import DataError
from vlbench.metrics.vqa import normalize_answer, process_punctuation, vqa_evaluate
from vlbench.registry import METRICS

DATA = json.loads((Path(__file__).parent / "data" / "metrics" / "vqa_official.json").read_text(encoding="utf-8"))
SUITES = {s["name"]: s for s in DATA["suites"]}


def _annotations(suite: dict) -> list[dict]:
    suite = SUITES[suite.get("same_data_as", suite["name"])]
    if "annotations" in suite:
        return suite["annotations"]
    return [
        {"question_id": q, "image_id": img, "question_type": qt, "answer_type": at,
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i} for i, a in enumerate(answers, 1)]}
        for q, img, qt, at, answers in suite["rows"]
    ]


def _predictions(suite: dict) -> list[dict]:
    return SUITES[suite.get("same_data_as", suite["name"])]["predictions"]


@pytest.mark.parametrize("name", list(SUITES))
def test_matches_official_script(name: str) -> None:
    suite = SUITES[name]
    expected = suite["expected"]
    got = vqa_evaluate(_predictions(suite), _annotations(suite), precision=suite["precision"])
    assert got["overall"] == expected["overall"]
    assert got["perAnswerType"] == expected["perAnswerType"]
    assert got["perQuestionType"] == expected["perQuestionType"]
    # unrounded, bit for bit, and in the official evaluation order
    assert list(got["per_question"].items()) == [tuple(p) for p in expected["per_question"]]


def test_python2_only_differences_are_the_documented_ones() -> None:
    """Python 2 differs only on a rounding tie and on non-ASCII digits; we follow the Python 3 run."""
    diffs = {s["name"]: s["python2_expected"] for s in DATA["suites"] if "python2_expected" in s}
    assert set(diffs) == {"quirks", "rounding_tie"}
    assert diffs["rounding_tie"] == {"overall": 12.13}
    assert SUITES["rounding_tie"]["expected"]["overall"] == 12.12  # round-half-even on the exact 12.125
    quirk_ids = {q for q, _ in diffs["quirks"]["per_question"]}
    notes = {a["question_id"]: a["note"] for a in SUITES["quirks"]["annotations"]}
    assert [notes[q] for q in quirk_ids] == ["non-ASCII digits with comma (Python 3 \\d is Unicode)"]


def test_predictions_as_mapping_and_order_do_not_matter() -> None:
    suite = SUITES["quirks"]
    preds = {p["question_id"]: p["answer"] for p in reversed(_predictions(suite))}
    got = vqa_evaluate(preds, _annotations(suite))
    assert got["overall"] == suite["expected"]["overall"]


def test_annotations_not_mutated() -> None:
    anns = _annotations(SUITES["quirks"])
    before = json.dumps(anns, sort_keys=True)
    vqa_evaluate(_predictions(SUITES["quirks"]), anns)
    assert json.dumps(anns, sort_keys=True) == before


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (" The Two dogs! ", "2 dogs"),
        ("1,000.", "1000"),
        ("red , blue", "red blue"),
        ("dont", "don't"),
        ("3.5", "3.5"),
        ("none", "0"),
        ("T-Shirt", "t shirt"),
        ("." * 33 + "x", ".x"),  # at most 32 periods go
    ],
)
def test_normalize_answer_hand_checked(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def test_process_punctuation_keeps_apostrophe_and_colon() -> None:
    assert process_punctuation("don't 10:30") == "don't 10:30"


def test_hand_computed_leave_one_out() -> None:
    # 2 of 10 humans say "red": leaving a "red" out leaves 1 match (1/3), leaving a "blue" out leaves 2 (2/3)
    ann = [{"question_id": 1, "question_type": "what color", "answer_type": "other",
            "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(["red"] * 2 + ["blue"] * 8, 1)]}]
    got = vqa_evaluate([{"question_id": 1, "answer": "red"}], ann)
    assert got["per_question"][1] == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert got["overall"] == 60.0


@pytest.mark.parametrize(
    ("preds", "message"),
    [
        ([{"question_id": 1}], "must be an object with 'question_id' and 'answer'"),
        ([{"question_id": 1, "answer": 3}], "must be a string"),
        ([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], "more than once"),
        ([], "1 of 1 reference question_ids have no prediction (first: 1)"),
        ([{"question_id": 1, "answer": "a"}, {"question_id": 9, "answer": "b"}], "not in the references (first: 9)"),
        ("yes", "must be a list"),
    ],
)
def test_bad_predictions_raise_one_clear_error(preds: object, message: str) -> None:
    ann = [{"question_id": 1, "question_type": "t", "answer_type": "other", "answers": [{"answer": "a"}]}]
    with pytest.raises(DataError, match=None) as info:
        vqa_evaluate(preds, ann)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_registered() -> None:
    metric = METRICS.get("vqa_accuracy")
    assert metric is vqa_evaluate
    suite = SUITES["quirks"]
    assert metric(_predictions(suite), {"annotations": _annotations(suite)})["overall"] == suite["expected"]["overall"]
