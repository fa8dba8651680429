"""The floor: the most frequent training answer for each question type, ignoring text and image."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from vlbench.models.base import FittedModel

__all__ = ["AnswerPrior"]


class AnswerPrior(FittedModel):
    """Predicts, for each question type, the answer most often given in training (ties: alphabetical)."""

    modalities = ()

    def __init__(self) -> None:
        self.by_type: dict[str, str] = {}
        self.overall = ""

    def fit(self, rows: list[dict[str, Any]]) -> None:
        """Count the majority answers of the training questions by question type."""
        per_type: dict[str, Counter] = defaultdict(Counter)
        total: Counter = Counter()
        for row in rows:
            per_type[row["question_type"]][row["multiple_choice_answer"]] += 1
            total[row["multiple_choice_answer"]] += 1
        # sorting by (-count, answer) makes ties deterministic across runs and platforms
        self.by_type = {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in per_type.items()}
        self.overall = min(total.items(), key=lambda kv: (-kv[1], kv[0]))[0] if total else ""

    def predict(self, rows: list[dict[str, Any]]) -> list[str]:
        """The prior answer of each row's question type (the overall one for unseen types)."""
        return [self.by_type.get(row["question_type"], self.overall) for row in rows]
