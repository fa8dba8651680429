"""Official VQA v2 JSON export/import of a VQA table, and the question-only bounds on a hand-made set."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from vlbench.data.base import ArrayImageStore, VLDataset
from vlbench.data.vqa_stats import question_only_bounds
from vlbench.data.vqa_format import VQA_FEATURES, annotations_list, from_official, to_official
from vlbench.errors import DataError


def _row(qid: int, question: str, qtype: str, atype: str, answers: list[str], mc: str) -> dict:
    return {
        "question_id": qid,
        "image_id": qid // 100,
        "question": question,
        "question_type": qtype,
        "answer_type": atype,
        "answers": answers,
        "answer_confidence": ["yes"] * 9 + ["maybe"],
        "multiple_choice_answer": mc,
    }


def _table(rows: list[dict]) -> Dataset:
    return Dataset.from_list(rows, features=VQA_FEATURES)


YES, NO = ["yes"] * 10, ["no"] * 10
TRAIN = [
    _row(100, "Is there a red circle?", "is there a", "yes/no", YES, "yes"),
    _row(101, "Is there a blue square?", "is there a", "yes/no", YES, "yes"),
    _row(102, "Is there a red circle?", "is there a", "yes/no", NO, "no"),
    _row(200, "How many circles are there?", "how many", "number", ["2"] * 10, "2"),
]
TEST = [
    _row(300, "Is there a red circle?", "is there a", "yes/no", NO, "no"),
    _row(301, "Is there a red circle?", "is there a", "yes/no", NO, "no"),
    _row(302, "Is there a blue square?", "is there a", "yes/no", YES, "yes"),
    # 7 "3", 3 "2": answering "2" scores 0.9, answering "3" scores 1.0
    _row(400, "How many circles are there?", "how many", "number", ["3"] * 7 + ["two", "2", "2."], "3"),
]


def test_to_official_layout() -> None:
    questions, annotations = to_official(_table(TEST), data_subtype="test")
    assert questions["task_type"] == "Open-Ended" and questions["data_subtype"] == "test"
    assert questions["questions"][0] == {"image_id": 3, "question": "Is there a red circle?", "question_id": 300}
    ann = annotations["annotations"][3]
    assert set(ann) == {"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer", "answers"}
    assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
    assert ann["answers"][7] == {"answer": "two", "answer_confidence": "yes", "answer_id": 8}
    assert ann["answers"][9]["answer_confidence"] == "maybe"
    assert annotations_list(_table(TEST)) == annotations["annotations"]


def test_official_roundtrip() -> None:
    table = _table(TEST)
    back = from_official(*to_official(table))
    assert back.to_list() == table.to_list()


def test_from_official_rejects_garbage() -> None:
    with pytest.raises(DataError):
        from_official({"questions": []}, {"annotations": [{"question_id": 1, "image_id": 1}]})
    with pytest.raises(DataError):
        from_official({}, {})


def test_annotations_list_needs_columns() -> None:
    with pytest.raises(DataError, match="multiple_choice_answer"):
        annotations_list(_table(TEST).remove_columns(["multiple_choice_answer"]))


def test_question_only_bounds_hand_computed() -> None:
    dataset = VLDataset(
        name="hand",
        fingerprint="x",
        images=ArrayImageStore(np.zeros((1, 8, 8, 3), dtype=np.uint8), [0]),
        tables={"vqa": DatasetDict({"train": _table(TRAIN), "test": _table(TEST)})},
    )
    bounds = question_only_bounds(dataset)
    # prior from train: "is there a" -> yes (2 of 3), "how many" -> 2
    # on test: 0 + 0 + 1 (yes/no) and 0.9 (number) -> overall 1.9 / 4
    assert bounds["prior_answers"] == {"is there a": "yes", "how many": "2"}
    assert bounds["prior"]["overall"] == pytest.approx(47.5)
    assert bounds["prior"]["perAnswerType"] == {"yes/no": pytest.approx(33.33), "number": pytest.approx(90.0)}
    # per test string: red circle -> no, blue square -> yes, circles -> 3: all right
    assert bounds["question_majority"]["overall"] == pytest.approx(100.0)
    assert bounds["question_oracle"]["overall"] == pytest.approx(100.0)
    assert bounds["plurality_ceiling"]["overall"] == pytest.approx(100.0)
    assert bounds["n_question_strings"] == 3
