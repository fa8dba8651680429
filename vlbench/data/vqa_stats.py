"""Question-only bounds of any VQA dataset (a ``vqa`` table): what a model that never looks at the image can score.

* ``prior``: the most frequent training answer (``multiple_choice_answer``) per ``question_type``, scored on
  test: what the ``prior`` baseline scores.
* ``question_majority``: for every exact question string, its most frequent answer *on the test split
  itself* (fitted on the very questions it is scored on).
* ``question_oracle``: for every exact question string, the single answer with the highest summed VQA
  accuracy on the test split itself. A text-only model gives one answer per string, so none can beat it:
  it is the ceiling of every text-only model, and a text-only score above it means something leaked.
* ``plurality_ceiling``: each question's own best-scoring answer (its plurality answer, with the official
  normalisation): what a perfect model scores once annotator disagreement is counted.

All numbers come from the official VQA accuracy (``vlbench.metrics.vqa.vqa_evaluate``). The per-string
search scores only the answers that can match a question (the official rule: after normalisation when
its ten answers disagree, as written when they agree; every other answer scores 0 there), a handful
per question, in one official evaluation per round of candidates, so it runs on all of VQA v2.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

from vlbench.data.base import VLDataset
from vlbench.data.pipeline import require_columns
from vlbench.data.vqa_format import VQA_COLUMNS, annotations_list
from vlbench.metrics.vqa import normalize_answer, vqa_evaluate

__all__ = ["BOUNDS", "majority", "prior_answers", "candidate_scores", "question_only_bounds"]

# the bounds in the order tables print them, each with what it is ({train}, {test}: the split names)
BOUNDS = {
    "prior": "prior: top {train} answer per question type (the `prior` baseline)",
    "question_majority": "top answer per exact question string, chosen on {test}",
    "question_oracle": "best-scoring answer per exact question string, chosen on {test} (ceiling of any text-only model)",
    "plurality_ceiling": "plurality ceiling: each question's own best-scoring answer",
}


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


def _strip(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def candidate_scores(annotations: Sequence[dict[str, Any]], groups: Sequence[str]) -> list[dict[str, float]]:
    """Per question, the official accuracy of every answer given to a question of its group that can match it.

    Candidates of a group are every human answer of its questions, as written (stripped) and normalised. A
    candidate can match a question only if (its ten answers disagree) its normalised form is one of theirs,
    or (they agree) it is their text; every other candidate scores 0 there and is left out.
    """
    written = [{_strip(a["answer"]) for a in ann["answers"]} for ann in annotations]
    normalised = [{normalize_answer(a) for a in texts} for texts in written]
    pool: dict[str, set[str]] = defaultdict(set)
    for group, texts, norms in zip(groups, written, normalised):
        pool[group] |= texts | norms
    by_norm: dict[str, dict[str, list[str]]] = {}
    for group, candidates in pool.items():
        index: dict[str, list[str]] = defaultdict(list)
        for c in sorted(candidates):
            index[normalize_answer(c)].append(c)
        by_norm[group] = index
    relevant = []
    for group, texts, norms in zip(groups, written, normalised):
        if len(texts) > 1:
            relevant.append(sorted(c for n in norms for c in by_norm[group].get(n, ())))
        else:
            relevant.append(sorted(c for c in pool[group] if _strip(c) in texts))
    scores: list[dict[str, float]] = [{} for _ in annotations]
    for r in range(max((len(c) for c in relevant), default=0)):  # one official evaluation per round
        rows = [i for i, c in enumerate(relevant) if len(c) > r]
        predictions = {annotations[i]["question_id"]: relevant[i][r] for i in rows}
        per_question = vqa_evaluate(predictions, [annotations[i] for i in rows])["per_question"]
        for i in rows:
            scores[i][relevant[i][r]] = per_question[annotations[i]["question_id"]]
    return scores


def _best(totals: dict[str, float]) -> str:
    """The highest total; ties go to the alphabetically first answer."""
    return min(totals, key=lambda c: (-totals[c], c))


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"overall": result["overall"], "perAnswerType": result["perAnswerType"], "perQuestionType": result["perQuestionType"]}


def question_only_bounds(dataset: VLDataset, train_split: str = "train", test_split: str = "test") -> dict[str, Any]:
    """Official VQA accuracy on ``test_split`` of the prior, the per-string majority and oracle, and the ceiling."""
    train = require_columns(dataset, "vqa", train_split, VQA_COLUMNS)
    train = train.select_columns(["question_type", "multiple_choice_answer"]).to_dict()
    test = require_columns(dataset, "vqa", test_split, VQA_COLUMNS)
    cols = test.select_columns(["question_id", "question", "question_type", "multiple_choice_answer"]).to_dict()
    annotations = annotations_list(test)
    qids, questions = cols["question_id"], cols["question"]

    prior = prior_answers(train["question_type"], train["multiple_choice_answer"])
    fallback = majority(train["multiple_choice_answer"])
    prior_pred = {qid: prior.get(qt, fallback) for qid, qt in zip(qids, cols["question_type"])}

    by_string: dict[str, list[str]] = defaultdict(list)
    for question, answer in zip(questions, cols["multiple_choice_answer"]):
        by_string[question].append(answer)
    top = {q: majority(a) for q, a in by_string.items()}
    majority_pred = {qid: top[q] for qid, q in zip(qids, questions)}

    scores = candidate_scores(annotations, questions)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for question, per_answer in zip(questions, scores):
        for answer, value in per_answer.items():
            totals[question][answer] += value
    oracle = {q: _best(totals[q]) for q in by_string}
    oracle_pred = {qid: oracle[q] for qid, q in zip(qids, questions)}
    ceiling_pred = {qid: _best(per_answer) for qid, per_answer in zip(qids, scores)}
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
        "plurality_ceiling": _summary(vqa_evaluate(ceiling_pred, annotations)),
    }
