"""Visual question answering as ViLT does it: multi-label classification over the training answers.

Targets are soft: each candidate answer gets the official VQA accuracy it would score against the ten
human answers, trained with binary cross-entropy. As in ViLT, training questions none of whose answers is
a class are dropped (``drop_unanswerable``); evaluation keeps every question. Predictions decode to answer strings in the official
submission format and are scored with the official VQA v2 accuracy.

Models that write their answers (``TextGenerator`` model types) are trained instead on the question's
official majority answer (``multiple_choice_answer``) after the task's ``prompt.query``, and generate;
every generated answer goes through :meth:`VQATask.answer_from_text` (the official normalisation) before
it is scored.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field

import torch
from torch import nn
from torch.nn import functional as F

from vlbench import distributed
from vlbench.data.pipeline import encode_texts, image_inputs, require_columns, split_roles, trim_tokens
from vlbench.data.vqa_format import VQA_COLUMNS
from vlbench.errors import DataError, SpecError
from vlbench.tasks.base import EvalResult, TaskOptions, TaskType
from vlbench.training.augment import AugmentInputs, LabelRules, vocabulary_rewrite

__all__ = ["VQAOptions", "VQATask", "VQAModel", "soft_score"]


class VQAOptions(TaskOptions):
    """Options of the VQA task type."""

    max_text_length: int = 24
    min_answer_count: int = Field(1, ge=1, description="an answer class needs at least this many counts (see answer_count)")
    answer_count: Literal["human", "majority"] = Field(
        "human", description="human: every one of the ten human answers counts once; majority: each question counts "
        "once, for its multiple_choice_answer (ViLT / bottom-up attention: 9 over train2014+val2014 gives 3,129)"
    )
    answer_vocab_splits: Optional[list[str]] = Field(
        None, description="dataset splits whose answers are counted (default: the training split only; naming the "
        "test split lets its answers choose the classes)"
    )
    drop_unanswerable: bool = Field(
        True, description="drop training questions none of whose answers is a class (as ViLT does); validation and "
        "test keep every question, which then scores 0"
    )


def soft_score(count: int, num_answers: int = 10) -> float:
    """Official leave-one-annotator-out accuracy of an answer given by ``count`` of ``num_answers`` humans."""
    if num_answers <= 1:
        return float(min(1.0, count / 3))
    with_it = (num_answers - count) * min(1.0, count / 3)
    without_it = count * min(1.0, (count - 1) / 3)
    return (with_it + without_it) / num_answers


class VQAModel(nn.Module):
    """An encoder with ViLT's VQA head: Linear(H, 2H) -> LayerNorm -> GELU -> Linear(2H, answers)."""

    def __init__(self, encoder: nn.Module, num_answers: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.hidden_size
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden * 2), nn.LayerNorm(hidden * 2), nn.GELU(), nn.Linear(hidden * 2, num_answers)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Answer logits (B, answers)."""
        return self.head(self.encoder(batch).pooled)


class VQATask(TaskType):
    """VQA over a dataset's ``vqa`` table (official VQA v2 fields)."""

    table = "vqa"
    Options = VQAOptions
    metric_names = ("accuracy", "accuracy/<answer type>")
    emap_outputs = True
    # a mirrored image keeps the answers once left and right swap in the question and the answer classes;
    # answers name colours ("what color is the circle?"): no hue or saturation jitter
    label_rules = LabelRules(flip="rewrites", names_colours=True)

    def __init__(self, spec, dataset) -> None:
        super().__init__(spec, dataset)
        from vlbench.metrics.vqa import normalize_answer

        self._normalize = normalize_answer
        self._questions: dict[str, list[str]] = {}
        self.split_names = split_roles(spec)
        self._rows = {role: require_columns(dataset, self.table, name, VQA_COLUMNS) for role, name in self.split_names.items()}
        self._check_answer_type_metric()
        self._build_answer_vocab()
        if self.options.drop_unanswerable:
            self._rows["train"] = self._answerable(self._rows["train"])
        self._encoded: dict[str, dict[str, torch.Tensor]] = {}
        self._annotations: dict[str, list[dict[str, Any]]] = {}

    def _check_answer_type_metric(self) -> None:
        """A per-answer-type primary metric must name an answer type of the validation and test splits (checked
        before any training: validation selects on it, and the test split reports it)."""
        name = self.spec.primary_metric
        wanted = name[len("accuracy/"):] if name.startswith("accuracy/") else ""
        types = sorted(set(self._rows["validation"]["answer_type"]) & set(self._rows["test"]["answer_type"]))
        if wanted and wanted not in types:
            raise SpecError(f"task {self.spec.name!r}: field 'primary_metric': {name!r} names no answer type of both "
                            f"the validation and the test split; use accuracy"
                            f"{''.join(', accuracy/' + t for t in types)}.")

    # --- preparation -------------------------------------------------------------------------------
    def _build_answer_vocab(self) -> None:
        # classes are normalized answers, but each class predicts its most frequent raw spelling: the
        # official metric compares raw strings when all ten humans agree ("t-shirt" vs "t shirt")
        counts: Counter = Counter()
        spellings: dict[str, Counter] = {}
        splits = self.options.answer_vocab_splits
        tables = [self._rows["train"]] if not splits else [self.dataset.split(self.table, name) for name in splits]
        column = "answers" if self.options.answer_count == "human" else "multiple_choice_answer"
        for table in tables:
            for answers in table[column]:
                for raw in answers if column == "answers" else [answers]:
                    norm = self._normalize(raw)
                    counts[norm] += 1
                    spellings.setdefault(norm, Counter())[" ".join(raw.split())] += 1
        keep = sorted(a for a, c in counts.items() if c >= self.options.min_answer_count)
        if not keep:
            raise DataError(f"task {self.spec.name!r}: no answer is counted {self.options.min_answer_count} times "
                            f"({self.options.answer_count} answers); lower options.min_answer_count.")
        self.answer_index = {a: i for i, a in enumerate(keep)}
        self.answers = [min(spellings[a].items(), key=lambda kv: (-kv[1], kv[0]))[0] for a in keep]
        once = sum(1 for a in keep if counts[a] == 1)
        if self.options.min_answer_count == 1 and once * 2 > len(keep) and distributed.is_main():
            # a real VQA corpus under the embedded task's defaults: a classifier over every answer anyone gave
            print(f"warning: task {self.spec.name!r}: min_answer_count 1 makes every distinct answer a class: "
                  f"{len(keep)} classes on {self.dataset.name!r}, {once} of them counted once; VQA v2 recipes keep "
                  "majority answers given at least 9 times (--task vqav2-vilt, or --set task.options.min_answer_count=9 "
                  "--set task.options.answer_count=majority).", file=sys.stderr)

    def _answerable(self, rows: Any) -> Any:
        """The questions with at least one human answer that is a class."""
        keep = [i for i, answers in enumerate(rows["answers"])
                if any(self._normalize(a) in self.answer_index for a in answers)]
        if not keep:
            raise DataError(f"task {self.spec.name!r}: no training question has an answer among the {len(self.answers)} "
                            "classes; lower options.min_answer_count or count the training split (answer_vocab_splits).")
        return rows if len(keep) == len(rows) else rows.select(keep)

    def training_texts(self) -> list[str]:
        """Training questions (for a word-level vocabulary)."""
        return list(self._rows["train"]["question"])

    def build_context_extras(self) -> dict[str, Any]:
        """The number of answers (the classifier's width)."""
        return {"num_answers": len(self.answers)}

    def prepare(self, tokenizer: Any) -> None:
        """Tokenize every split and turn the ten human answers into sparse soft targets."""
        self.tokenizer = tokenizer
        self._encoded = {}
        for role, rows in self._rows.items():
            enc = encode_texts(tokenizer, list(rows["question"]), self.options.max_text_length)
            label_idx, label_score = self._targets(rows["answers"])
            self._encoded[role] = {
                **enc,
                "image_ids": torch.tensor(list(rows["image_id"]), dtype=torch.long),
                "label_idx": label_idx,
                "label_score": label_score,
            }

    def augment_inputs(self) -> AugmentInputs:
        """The question's rewrites, plus the answer classes' (a flipped "left" answer scores as "right")."""
        inputs = super().augment_inputs()
        answers = vocabulary_rewrite("targets", self.answers, self.label_rules.side_words, kind="columns")
        if answers is not None:
            inputs.rewrites.append(answers)
        return inputs

    def _targets(self, answer_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max((len(a) for a in answer_lists), default=1)
        idx = torch.full((len(answer_lists), width), -1, dtype=torch.long)
        score = torch.zeros((len(answer_lists), width))
        for row, answers in enumerate(answer_lists):
            counts = Counter(self._normalize(a) for a in answers)
            for col, (answer, count) in enumerate(sorted(counts.items())):
                if answer in self.answer_index:
                    idx[row, col] = self.answer_index[answer]
                    score[row, col] = soft_score(count, len(answers))
        return idx, score

    def wrap(self, encoder: nn.Module) -> nn.Module:
        """Encoder + VQA classifier head; a text generator is wrapped to learn the majority answers instead."""
        from vlbench.tasks.generated import GeneratingModel, is_generator, require_prompt

        if is_generator(encoder):
            require_prompt(self)
            majority = list(self._rows["train"]["multiple_choice_answer"])
            targets = [self.answer_class(a) for a in majority]
            return GeneratingModel(encoder, lambda idx: (self.prompts("train", idx), [targets[i] for i in idx]))
        return VQAModel(encoder, len(self.answers))

    def answer_class(self, answer: str) -> Optional[str]:
        """The answer as the task's classes spell it (the class's most frequent form), None if it is no class."""
        index = self.answer_index.get(self._normalize(answer))
        return self.answers[index] if index is not None else None

    def answer_from_text(self, text: str) -> str:
        """A generated answer as it is scored: its first line, officially normalised, spelled as its class if any.

        The official metric compares raw strings when all ten humans agree, so a known answer takes the
        spelling the classifier heads would output; any other text is scored in its normalised form.
        """
        from vlbench.models.prompted import extract_answer

        normalised = self._normalize(extract_answer(text))
        return self.answer_class(normalised) or normalised

    def prompts(self, split: str, indices: list[int]) -> list[str]:
        """The task's ``prompt.query`` filled with the questions of ``split`` at ``indices``."""
        from vlbench.models.prompted import fill
        from vlbench.tasks.generated import require_prompt

        template = require_prompt(self).query
        if split not in self._questions:
            self._questions[split] = list(self._rows[split]["question"])
        questions = self._questions[split]
        return [fill(template, {"question": questions[i]}, f"task {self.spec.name!r} prompt") for i in indices]

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE against soft targets, scaled by the number of answers as in ViLT (a generator's loss as it is)."""
        if outputs.dim() == 0:  # a GeneratingModel's language-model loss
            return outputs
        targets = batch["targets"].to(outputs.dtype)
        return F.binary_cross_entropy_with_logits(outputs.float(), targets.float()) * targets.shape[1]

    # --- data --------------------------------------------------------------------------------------
    def num_examples(self, split: str) -> int:
        """Number of questions in a split role (train / validation / test)."""
        return len(self._rows[split])

    def collate(self, split: str, indices: list[int], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Token ids trimmed to the longest question, soft targets, and pixels only for image models."""
        enc = self._encoded[split]
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"index": index, **trim_tokens(enc, index)}
        label_idx = enc["label_idx"].index_select(0, index)
        label_score = enc["label_score"].index_select(0, index)
        targets = torch.zeros(len(indices), len(self.answers))
        valid = label_idx >= 0
        targets[torch.nonzero(valid, as_tuple=True)[0], label_idx[valid]] = label_score[valid]
        batch["targets"] = targets
        if "image" in modalities:
            batch.update(image_inputs(self, enc["image_ids"].index_select(0, index).tolist()))
        return batch

    def resident_split(self, split, modalities, device, budget):
        """The split on the device when it fits in ``budget`` (see :mod:`vlbench.data.resident`)."""
        from vlbench.data.resident import build_resident

        return build_resident(self, split, modalities, device, budget, self._encoded[split]["image_ids"].tolist())

    # --- evaluation --------------------------------------------------------------------------------
    def annotations(self, split: str) -> list[dict[str, Any]]:
        """Official-format annotations of a split role (cached)."""
        if split not in self._annotations:
            from vlbench.data.vqa_format import annotations_list

            self._annotations[split] = annotations_list(self._rows[split])
        return self._annotations[split]

    def _official(self, split: str, answers: list[str], items: Optional[list[int]] = None) -> tuple[dict, dict, list]:
        """(metrics, the official result, predictions) of one answer per question at ``items`` (default: all)."""
        from vlbench.metrics.vqa import vqa_evaluate

        qids = list(self._rows[split]["question_id"])
        annotations = self.annotations(split)
        if items is not None:
            qids, annotations = [qids[i] for i in items], [annotations[i] for i in items]
        predictions = [{"question_id": int(q), "answer": a} for q, a in zip(qids, answers)]
        result = vqa_evaluate(predictions, annotations)
        metrics = {"accuracy": result["overall"]}
        metrics.update({f"accuracy/{k}": v for k, v in sorted(result["perAnswerType"].items())})
        return metrics, result, predictions

    def score(self, split: str, answers: list[str]) -> EvalResult:
        """Official VQA accuracy of one answer per question of a split."""
        metrics, result, predictions = self._official(split, answers)
        per_example = {str(q): float(v) for q, v in result["per_question"].items()}
        details = {"perAnswerType": result["perAnswerType"], "perQuestionType": result["perQuestionType"]}
        return EvalResult(metrics, self.primary_value(metrics), per_example, predictions, details)

    def flip_view(self, split: str, result: EvalResult) -> dict[str, Any]:
        """Each question's score in ``result`` with its question type, question, answer given and image id."""
        rows = self._rows[split]
        answers = {str(p["question_id"]): p["answer"] for p in result.predictions or []}
        items = {}
        for qid, qtype, question, image_id in zip(rows["question_id"], rows["question_type"], rows["question"],
                                                   rows["image_id"]):
            key = str(qid)
            items[key] = {"score": result.per_example[key], "group": qtype, "question": question,
                          "answer": answers.get(key), "image_id": int(image_id)}
        return {"group_by": "question type", "full_mark": 1.0, "items": items}

    def question_only(self) -> dict[str, Any]:
        """The test split's question-only bounds (official accuracy, %; see vlbench.data.vqa_stats), computed once."""
        if not hasattr(self, "_question_only"):
            from vlbench.data.vqa_stats import BOUNDS, question_only_bounds

            bounds = question_only_bounds(self.dataset, self.split_names["train"], self.split_names["test"])
            self._question_only = {"metric": "accuracy", **{key: bounds[key]["overall"] for key in BOUNDS}}
        return self._question_only

    # --- EMAP (vlbench.tasks.emap) -------------------------------------------------------------------
    def emap_problem(self, model: nn.Module) -> Optional[str]:
        """None for a classifier head; a model that writes its answers has no answer logits to project."""
        from vlbench.distributed import unwrap
        from vlbench.tasks.generated import GeneratingModel

        if isinstance(unwrap(model), GeneratingModel):
            return "the model writes its answers: there are no answer logits to project"
        return None

    def pair_batch(self, split, text_items, image_items, modalities):
        """Row b: the question of item ``text_items[b]`` with the image of item ``image_items[b]``."""
        enc = self._encoded[split]
        texts = torch.as_tensor(text_items, dtype=torch.long)
        batch = {"index": texts, **trim_tokens(enc, texts)}
        images = enc["image_ids"].index_select(0, torch.as_tensor(image_items, dtype=torch.long))
        batch.update(image_inputs(self, images.tolist()))
        return batch

    def pair_outputs(self, model, batch):
        """Answer logits (B, answers): the prediction is their argmax."""
        return model(batch)

    def emap_metrics(self, split, items, outputs):
        """Official VQA accuracy of the argmax answers of ``outputs`` on the questions at ``items``."""
        return self._official(split, [self.answers[i] for i in outputs.argmax(-1).tolist()], items)[0]

    # --- robustness suites (vlbench.robustness) -----------------------------------------------------------
    def input_texts(self, split: str) -> list[str]:
        """The questions of a split role."""
        return list(self._rows[split]["question"])

    def replace_input_texts(self, split, texts, tokenizer):
        """Encode ``texts`` as the split's questions (token ids and a generator's prompts); returns the undo."""
        encoded, questions = self._encoded[split], self._questions.get(split)
        self._encoded[split] = {**encoded, **encode_texts(tokenizer, list(texts), self.options.max_text_length)}
        self._questions[split] = list(texts)

        def restore() -> None:
            self._encoded[split] = encoded
            if questions is None:
                self._questions.pop(split, None)
            else:
                self._questions[split] = questions

        return restore

    def attack_problem(self, model: nn.Module) -> Optional[str]:
        """None for a classifier head (its BCE loss); a model that writes its answers has none on test questions."""
        from vlbench.distributed import unwrap
        from vlbench.tasks.generated import GeneratingModel

        if isinstance(unwrap(model), GeneratingModel):
            return "the model writes its answers: no classification loss to attack"
        return None

    def attack_loss(self, model, split, batch):
        """The training loss (BCE against the soft targets) of the answer logits."""
        return self.loss(model(batch), batch)

    @torch.no_grad()
    def evaluate(self, model, split, batch_size, modalities, device) -> EvalResult:
        """Argmax answer per question, scored with the official metric (each process predicts its block)."""
        from vlbench.distributed import eval_batches, gather_list, on_main, unwrap
        from vlbench.tasks.generated import GeneratingModel, generate_split

        model = unwrap(model)
        model.eval()
        if isinstance(model, GeneratingModel):
            longest = model.encoder.target_length(self.answers)  # no class needs more tokens than this
            texts = generate_split(self, model, split, batch_size, modalities, device,
                                   lambda idx: self.prompts(split, idx), longest)
            answers = [self.answer_from_text(t) for t in texts]
            return on_main(lambda: self.score(split, answers))
        best: list[torch.Tensor] = []  # kept on the device: one transfer at the end, not a wait per batch
        for batch in eval_batches(self, split, batch_size, modalities):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # pinned on CUDA: no wait
            best.append(model(batch).argmax(-1))
        picked = torch.cat(best).tolist() if best else []
        answers = gather_list([self.answers[i] for i in picked])
        return on_main(lambda: self.score(split, answers))

    def fit_and_evaluate(self, fitted, splits):
        """Fit a counting model on the training questions and score the given split roles."""
        fitted.fit(list(self._rows["train"]))
        results = {}
        for split in splits:
            answers = fitted.predict(list(self._rows[split]))
            if getattr(fitted, "generates_text", False):  # free text: normalised as a generator's answers are
                answers = [self.answer_from_text(a) for a in answers]
            results[split] = self.score(split, answers)
        return results

    def write_predictions(self, predictions: Any, path: Path) -> Path:
        """VQA submission format: ``[{"question_id": int, "answer": str}]``."""
        from vlbench.io import atomic_write_json

        return atomic_write_json(path, predictions, indent=None)
