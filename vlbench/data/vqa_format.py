"""Conversion between a VQA table (one HF split) and the official VQA v2 questions/annotations JSON.

Official layout (https://visualqa.org/download.html):
questions file ``{"info", "task_type", "data_type", "license", "data_subtype", "questions": [{"image_id",
"question", "question_id"}]}``; annotations file ``{"info", "license", "data_subtype", "annotations":
[{"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer", "answers": [{"answer",
"answer_confidence", "answer_id"}]}]}``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from datasets import Dataset, Features, List, Value

from vlbench.errors import DataError
from vlbench.metrics.official import FILE_FIELDS, entry_error, vqa_annotations, vqa_questions

__all__ = ["VQA_COLUMNS", "VQA_FEATURES", "annotations_list", "questions_list", "to_official", "from_official"]

VQA_COLUMNS = (
    "question_id",
    "image_id",
    "question",
    "question_type",
    "answer_type",
    "answers",
    "answer_confidence",
    "multiple_choice_answer",
)
VQA_FEATURES = Features(
    {
        "question_id": Value("int64"),
        "image_id": Value("int64"),
        "question": Value("string"),
        "question_type": Value("string"),
        "answer_type": Value("string"),
        "answers": List(Value("string")),
        "answer_confidence": List(Value("string")),
        "multiple_choice_answer": Value("string"),
    }
)


def _columns(split_dataset: Dataset) -> dict[str, list[Any]]:
    missing = [c for c in VQA_COLUMNS if c not in split_dataset.column_names]
    if missing:
        raise DataError(f"VQA table lacks column(s) {', '.join(missing)}; it has {', '.join(split_dataset.column_names)}.")
    # one columnar read is far faster than iterating rows of an Arrow table
    return split_dataset.select_columns(list(VQA_COLUMNS)).to_dict()


def annotations_list(split_dataset: Dataset) -> list[dict[str, Any]]:
    """Official annotation records of a VQA split, in table order (the input ``vqa_evaluate`` expects)."""
    cols = _columns(split_dataset)
    out = []
    for i in range(len(cols["question_id"])):
        answers, confidences = cols["answers"][i], cols["answer_confidence"][i]
        out.append(
            {
                "question_id": int(cols["question_id"][i]),
                "image_id": int(cols["image_id"][i]),
                "question_type": cols["question_type"][i],
                "answer_type": cols["answer_type"][i],
                "multiple_choice_answer": cols["multiple_choice_answer"][i],
                "answers": [
                    {"answer": a, "answer_confidence": c, "answer_id": j}
                    for j, (a, c) in enumerate(zip(answers, confidences), start=1)
                ],
            }
        )
    return out


def questions_list(split_dataset: Dataset) -> list[dict[str, Any]]:
    """Official question records of a VQA split."""
    cols = _columns(split_dataset)
    return [
        {"image_id": int(img), "question": q, "question_id": int(qid)}
        for img, q, qid in zip(cols["image_id"], cols["question"], cols["question_id"])
    ]


def to_official(
    split_dataset: Dataset, *, data_type: str = "shapes", data_subtype: str = "", description: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(questions_json, annotations_json)`` of one split in the official VQA v2 file layout."""
    info = {"description": description or f"vlbench {data_type} VQA", "version": "2.0"}
    license_ = {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}
    questions = {
        "info": info,
        "task_type": "Open-Ended",
        "data_type": data_type,
        "license": license_,
        "data_subtype": data_subtype,
        "questions": questions_list(split_dataset),
    }
    annotations = {
        "info": info,
        "license": license_,
        "data_subtype": data_subtype,
        "annotations": annotations_list(split_dataset),
    }
    return questions, annotations


def from_official(questions_json: Mapping[str, Any], annotations_json: Mapping[str, Any], *,
                  questions_source: str = "VQA questions", annotations_source: str = "VQA annotations") -> Dataset:
    """A VQA table from official questions + annotations JSON (real VQA v2 files or :func:`to_official` output).

    Both are checked against the official schema first (:mod:`vlbench.metrics.official`, the checks
    ``vlbench score`` makes): nothing is coerced, and an annotation must match its question's image.
    The sources name the files in error messages.
    """
    questions = vqa_questions(questions_json, questions_source)
    annotations = vqa_annotations(annotations_json, annotations_source, required=FILE_FIELDS, choice_without_answers=True)
    cols: dict[str, list[Any]] = {c: [] for c in VQA_COLUMNS}
    for k, ann in enumerate(annotations):
        qid = ann["question_id"]
        where = f"annotation #{k} (question_id {qid})"
        question = questions.get(qid)
        if question is None:
            raise entry_error(annotations_source, where, "question_id", f"has no question in {questions_source}")
        if question["image_id"] != ann["image_id"]:
            raise entry_error(annotations_source, where, "image_id",
                              f"differs from its question's image_id {question['image_id']} in {questions_source}", ann["image_id"])
        answers = ann["answers"]
        texts = [a["answer"] for a in answers]
        cols["question_id"].append(qid)
        cols["image_id"].append(ann["image_id"])
        cols["question"].append(question["question"])
        cols["question_type"].append(ann["question_type"])
        cols["answer_type"].append(ann["answer_type"])
        cols["answers"].append(texts)
        cols["answer_confidence"].append([a.get("answer_confidence", "yes") for a in answers])
        choice = ann["multiple_choice_answer"] if "multiple_choice_answer" in ann else Counter(texts).most_common(1)[0][0]
        cols["multiple_choice_answer"].append(choice)
    return Dataset.from_dict(cols, features=VQA_FEATURES)
