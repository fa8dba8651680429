"""The official VQA v2 schemas (questions and annotations), checked in one place for every reader.

``vlbench score`` (:mod:`vlbench.metrics.formats`) and the dataset readers (``vqav2``, ``hf``, through
:mod:`vlbench.data.vqa_format`) share these checks, so a file is accepted or refused the same way by
both. A value of the wrong JSON type is refused, never coerced: a float id is not truncated (10.7 is
not 10), a number is not turned into a string, text must be valid Unicode (JSON's ``\\ud800`` escapes
can make lone surrogates that no output can print), and an id given twice is refused rather than one
copy silently winning. Every refusal is one DataError line naming the source (the file), the entry
and the field. The helpers (:func:`is_int`, :func:`is_text`, :func:`entry_error`) serve the other
readers' schemas too (Karpathy splits, COCO captions).
"""

from __future__ import annotations

import reprlib
from typing import Any, Mapping, Optional, Sequence

from vlbench.errors import DataError

__all__ = [
    "is_int",
    "is_text",
    "preview",
    "entry_error",
    "check_fields",
    "check_vqa_annotations",
    "vqa_annotations",
    "vqa_questions",
    "SCORE_FIELDS",
    "FILE_FIELDS",
]

# what `vlbench score` needs of a reference annotation (image ids play no part in the metric)
SCORE_FIELDS = ("question_id", "question_type", "answer_type", "answers")
# what a dataset reader needs of an official annotations file (multiple_choice_answer can be derived)
FILE_FIELDS = ("question_id", "image_id", "question_type", "answer_type", "answers")
# "question" is not in official annotations, but the hf reader's rows carry it beside the annotation fields
_ANNOTATION_KINDS = {"question_id": "int", "image_id": "int", "question_type": "text", "answer_type": "text",
                     "multiple_choice_answer": "text", "question": "text"}
_QUESTION_KINDS = {"question_id": "int", "image_id": "int", "question": "text"}
_INT64 = (-(2**63), 2**63 - 1)
_NEEDS = {"int": "must be an integer", "text": "must be a string (valid Unicode)"}

_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel, _PREVIEW.maxstring, _PREVIEW.maxother, _PREVIEW.maxlong = 3, 40, 40, 40


def preview(value: Any) -> str:
    """A short, depth-bounded rendering of a bad value for an error message (surrogates escaped)."""
    return _PREVIEW.repr(value)[:80]


def is_int(value: Any) -> bool:
    """An integer and nothing else (not a bool, not a float such as 10.0 or 10.7, not a numeric string)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    """A string that can be written out as UTF-8 (no lone surrogate)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def entry_error(source: str, entry: str, field: str, problem: str, value: Any = ...) -> DataError:
    """One line: ``SOURCE: ENTRY: 'FIELD' PROBLEM[, got VALUE].``"""
    got = "" if value is ... else f", got {preview(value)}"
    return DataError(f"{source}: {entry}: {field!r} {problem}{got}.")


def check_fields(record: Any, source: str, entry: str, kinds: Mapping[str, str], required: Sequence[str]) -> None:
    """``record`` is an object whose ``required`` fields are present and whose fields in ``kinds`` have their kind."""
    if not isinstance(record, Mapping):
        raise DataError(f"{source}: {entry} must be an object with {', '.join(required)}, got {preview(record)}.")
    for name in required:
        if name not in record:
            raise entry_error(source, entry, name, "is missing")
    for name, kind in kinds.items():
        if name in record and not (is_int if kind == "int" else is_text)(record[name]):
            raise entry_error(source, entry, name, _NEEDS[kind], record[name])
        if name in record and kind == "int" and not _INT64[0] <= record[name] <= _INT64[1]:
            raise entry_error(source, entry, name, "is outside the 64-bit integer range that ids are stored in", record[name])


def _answers_problem(answers: Any, has_choice: bool) -> Optional[str]:
    if not isinstance(answers, list):
        return 'must be a list of {"answer": "..."} objects'
    if not answers and not has_choice:
        return "is empty and there is no multiple_choice_answer"
    for j, answer in enumerate(answers):
        if not isinstance(answer, Mapping) or not is_text(answer.get("answer")):
            return f'entry #{j} must be an object {{"answer": "..."}} with a string answer (valid Unicode)'
        if "answer_confidence" in answer and not is_text(answer["answer_confidence"]):
            return f"entry #{j} has an answer_confidence that is not a string"
        if "answer_id" in answer and not is_int(answer["answer_id"]):
            return f"entry #{j} has an answer_id that is not an integer"
    return None


def _entry(entry: str, k: int, record: Any) -> str:
    """``annotation #3``, with the record's question id when it has a well-formed one."""
    qid = record.get("question_id") if isinstance(record, Mapping) else None
    return f"{entry} #{k} (question_id {qid})" if is_int(qid) else f"{entry} #{k}"


def _container(obj: Any, key: str, source: str, what: str) -> list[Any]:
    """``obj[key]`` when ``obj`` is an object holding a ``key`` list; otherwise one line saying what it holds."""
    if not isinstance(obj, Mapping):
        got = f"got a JSON {type(obj).__name__}"
    elif key not in obj:
        got = f"it has no {key!r}"
    elif not isinstance(obj[key], list):
        got = f"its {key!r} is a JSON {type(obj[key]).__name__}"
    else:
        return obj[key]
    raise DataError(f"{source} must be a VQA {what} object holding a list {key!r}; {got}.")


def check_vqa_annotations(items: Sequence[Any], source: str, *, required: Sequence[str] = SCORE_FIELDS,
                          entry: str = "annotation", choice_without_answers: bool = False) -> list[Mapping[str, Any]]:
    """Every VQA annotation record well-typed, with ``required`` present and no question id twice.

    ``answers`` must be non-empty, unless ``choice_without_answers`` and the record gives a
    ``multiple_choice_answer`` (a reader can train on that; ``vlbench score`` needs the answers).
    """
    first: dict[int, int] = {}
    for k, ann in enumerate(items):
        where = _entry(entry, k, ann)
        check_fields(ann, source, where, _ANNOTATION_KINDS, required)
        if "answers" in ann:
            problem = _answers_problem(ann["answers"], choice_without_answers and "multiple_choice_answer" in ann)
            if problem:
                raise entry_error(source, where, "answers", problem)
        qid = ann.get("question_id")
        if qid is not None:
            if qid in first:
                raise entry_error(source, where, "question_id", f"repeats {entry} #{first[qid]}: keep one {entry} per question")
            first[qid] = k
    return list(items)


def vqa_annotations(obj: Any, source: str, *, required: Sequence[str] = SCORE_FIELDS,
                    choice_without_answers: bool = False) -> list[Mapping[str, Any]]:
    """The checked ``annotations`` list of an official VQA v2 annotations object (non-empty)."""
    items = _container(obj, "annotations", source, "annotations")
    if not items:
        raise DataError(f"{source} has an empty 'annotations' list.")
    return check_vqa_annotations(items, source, required=required,
                                 choice_without_answers=choice_without_answers)


def vqa_questions(obj: Any, source: str) -> dict[int, Mapping[str, Any]]:
    """``{question_id: question}`` of an official VQA v2 questions object, every question checked, no id twice."""
    out: dict[int, tuple[int, Mapping[str, Any]]] = {}
    for k, question in enumerate(_container(obj, "questions", source, "questions")):
        where = _entry("question", k, question)
        check_fields(question, source, where, _QUESTION_KINDS, tuple(_QUESTION_KINDS))
        qid = question["question_id"]
        if qid in out:
            raise entry_error(source, where, "question_id", f"repeats question #{out[qid][0]}: keep one question per id")
        out[qid] = (k, question)
    return {qid: question for qid, (_, question) in out.items()}
