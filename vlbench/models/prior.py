"""The floor: the most frequent training answer for each question type, ignoring text and image."""

from __future__ import annotations

from typing import Any

from vlbench.data.vqa_stats import majority, prior_answers
from vlbench.models.base import FittedModel

__all__ = ["AnswerPrior"]


class AnswerPrior(FittedModel):
    """Predicts, for each question type, the answer most often given in training (ties: alphabetical)."""

    modalities = ()

    def __init__(self) -> None:
        self.by_type: dict[str, str] = {}
        self.overall = ""

    def fit(self, rows: list[dict[str, Any]]) -> None:
        """Count the majority answers of the training questions by question type (as `vlbench data stats` does)."""
        types = [row["question_type"] for row in rows]
        answers = [row["multiple_choice_answer"] for row in rows]
        self.by_type = prior_answers(types, answers)
        self.overall = majority(answers) if answers else ""

    def predict(self, rows: list[dict[str, Any]]) -> list[str]:
        """The prior answer of each row's question type (the overall one for unseen types)."""
        return [self.by_type.get(row["question_type"], self.overall) for row in rows]
