"""Question-only bounds of a VQA dataset: what a model that never looks at the image can score.

* ``prior``: the most frequent training answer per question_type (the ``prior`` baseline), scored on test.
* ``question_majority``: for every exact question string, its most frequent answer *on the test split
  itself* (fitted on the very questions it is scored on).
* ``question_oracle``: for every exact question string, the single answer with the highest summed VQA
  accuracy on the test split itself. A text-only model gives one answer per string, so none can beat it.
* ``ceiling``: predicting each question's own ``multiple_choice_answer`` (what a perfect model scores
  once annotator disagreement is counted).

All numbers come from the official VQA accuracy (``vlbench.metrics.vqa.vqa_evaluate``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from vlbench.data.base import VLDataset
from vlbench.data.vqa_format import annotations_list
from vlbench.metrics.vqa import normalize_answer, vqa_evaluate

__all__ = ["majority", "prior_answers", "question_only_bounds"]


def majority(answers: Iterable[str]) -> str:
    """Most frequent answer; ties go to the alphabetically first so that results are deterministic."""
    counts = Counter(answers)
    if not counts:
        raise ValueError("no answers")
    best = max(counts.values())
    return min(a for a, c in counts.items() if c == best)


def prior_answers(question_types: Iterable[str], answers: Iterable[str]) -> dict[str, str]:
    """Most frequent answer per question type."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for qtype, answer in zip(question_types, answers):
        grouped[qtype].append(answer)
    return {qtype: majority(values) for qtype, values in grouped.items()}


def _best_answer_per_string(
    question_ids: list[int], questions: list[str], annotations: list[dict[str, Any]]
) -> dict[int, str]:
    """Per question string, the candidate answer with the highest summed official accuracy."""
    candidates = sorted({normalize_answer(a["answer"]) for ann in annotations for a in ann["answers"]})
    # accuracy of answering c to every question, one official evaluation per candidate answer
    per_candidate = {c: vqa_evaluate(dict.fromkeys(question_ids, c), annotations)["per_question"] for c in candidates}
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for qid, question in zip(question_ids, questions):
        for c in candidates:
            totals[question][c] += per_candidate[c][qid]
    # ties go to the alphabetically first answer (candidates are sorted), for determinism
    best = {q: max(scores, key=lambda c: (scores[c], -candidates.index(c))) for q, scores in totals.items()}
    return {qid: best[q] for qid, q in zip(question_ids, questions)}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"overall": result["overall"], "perAnswerType": result["perAnswerType"], "perQuestionType": result["perQuestionType"]}


def question_only_bounds(dataset: VLDataset, train_split: str = "train", test_split: str = "test") -> dict[str, Any]:
    """Official VQA accuracy on ``test_split`` of the prior, the per-question-string oracle and the ceiling."""
    train = dataset.split("vqa", train_split).select_columns(["question_type", "multiple_choice_answer"]).to_dict()
    test = dataset.split("vqa", test_split)
    cols = test.select_columns(["question_id", "question", "question_type", "multiple_choice_answer"]).to_dict()
    annotations = annotations_list(test)

    prior = prior_answers(train["question_type"], train["multiple_choice_answer"])
    fallback = majority(train["multiple_choice_answer"])
    prior_pred = {qid: prior.get(qt, fallback) for qid, qt in zip(cols["question_id"], cols["question_type"])}

    by_string: dict[str, list[str]] = defaultdict(list)
    for question, answer in zip(cols["question"], cols["multiple_choice_answer"]):
        by_string[question].append(answer)
    top = {q: majority(a) for q, a in by_string.items()}
    majority_pred = {qid: top[q] for qid, q in zip(cols["question_id"], cols["question"])}
    oracle_pred = _best_answer_per_string(cols["question_id"], cols["question"], annotations)

    ceiling_pred = dict(zip(cols["question_id"], cols["multiple_choice_answer"]))
    return {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "train_split": train_split,
        "test_split": test_split,
        "n_test_questions": test.num_rows,
        "n_question_strings": len(by_string),
        "prior": _summary(vqa_evaluate(prior_pred, annotations)),
        "prior_answers": prior,
        "question_majority": _summary(vqa_evaluate(majority_pred, annotations)),
        "question_oracle": _summary(vqa_evaluate(oracle_pred, annotations)),
        "ceiling": _summary(vqa_evaluate(ceiling_pred, annotations)),
    }
