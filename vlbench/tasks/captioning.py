"""Image captioning: an encoder reads the image, a text decoder writes the caption, COCO metrics score it.

Any dataset with a ``captions`` table (``image_id``, ``caption``; several rows per image, as in the COCO
captions annotation file) plugs in. One example is one image: training uses every reference caption of
the image against a single encoder pass, validation decodes greedily (fast; early stopping on CIDEr),
and the test split is decoded with beam search (``options.beam_size``). Predictions are written in the
COCO results format ``[{"image_id", "caption"}]`` together with the split's references as a COCO
captions annotation file, so ``vlbench score --task captioning`` reproduces the run's numbers.

Image encoders get an empty text (a lone ``[CLS] [SEP]``), so ViLT's sequence output is, in effect, its
patch features; the ``blind`` model type sees nothing and gives the decoder a learned constant, which
makes it the language-model floor of the table.

A model type that writes text itself (``TextGenerator``, e.g. ``smollm-llava``) replaces the decoder: it
learns each image's references after the task's ``prompt.query`` (one reference per image and pass,
cycling through them, as written) and writes captions greedily on every split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from vlbench.data.pipeline import require_columns
from vlbench.tasks.base import EvalResult
from vlbench.tasks.generation import Seq2SeqOptions, Seq2SeqTask
from vlbench.training.augment import LabelRules

__all__ = ["CaptioningOptions", "CaptioningTask"]


class CaptioningOptions(Seq2SeqOptions):
    """Options of the captioning task type."""

    max_text_length: int = 8
    max_target_length: int = 40
    spice_dir: Optional[str] = Field(None, description="folder with Stanford CoreNLP 3.6.0 jars for SPICE (test only)")
    validation_meteor: bool = Field(False, description="also run METEOR at every validation (CIDEr decides anyway)")


class CaptioningTask(Seq2SeqTask):
    """Captioning over a dataset's ``captions`` table; metrics from ``vlbench.metrics.captioning``."""

    table = "captions"
    Options = CaptioningOptions
    predictions_suffix = ".json"
    metric_names = ("CIDEr", "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "METEOR")  # SPICE: test split only
    # PTB tokenization lowercases before scoring, so a lowercased vocabulary loses nothing
    lowercase_targets = True
    # a mirrored image keeps its captions once their left and right swap; captions name colours; the models
    # read no input text (an empty one), so there is no text to augment
    label_rules = LabelRules(flip="rewrites", names_colours=True, text_input=False)

    @classmethod
    def primary_metric_problem(cls, name: str, options: Any) -> Optional[str]:
        """METEOR selects checkpoints only when validation computes it (``validation_meteor``)."""
        if name == "METEOR" and not options.validation_meteor:
            return "validation computes METEOR only with task.options.validation_meteor=true"
        return super().primary_metric_problem(name, options)

    def __init__(self, spec, dataset) -> None:
        super().__init__(spec, dataset)
        self._rows: dict[str, Any] = {}
        for role, name in self.split_names.items():
            rows = require_columns(dataset, self.table, name, ["caption_id", "image_id", "caption"])
            cols = rows.select_columns(["image_id", "caption"]).to_dict()
            grouped: dict[int, list[str]] = {}
            for image_id, caption in zip(cols["image_id"], cols["caption"]):
                grouped.setdefault(int(image_id), []).append(caption)
            self._rows[role] = rows
            self._image_ids[role] = list(grouped)
            self._targets[role] = list(grouped.values())
        self._setup_targets()
        self._validation_scorer: Any = None

    def _sources(self, role: str) -> list[str]:
        """No source text: every image gets an empty one."""
        return [""] * len(self._image_ids[role])

    def references(self, role: str) -> dict[int, list[str]]:
        """{image_id: [reference captions]} of a role."""
        return dict(zip(self._image_ids[role], self._targets[role]))

    def _scorer(self, split: str) -> Any:
        from vlbench.metrics.captioning import CaptionScorer, shared_caption_scorer

        if split == "validation" and not self.options.validation_meteor:
            if self._validation_scorer is None:
                self._validation_scorer = CaptionScorer(meteor=False)
            return self._validation_scorer
        return shared_caption_scorer(self.options.spice_dir if split == "test" else None)

    def score(self, split: str, hypotheses: list[str]) -> EvalResult:
        """pycocoevalcap scores of one caption per image; primary CIDEr, per-image CIDEr for significance tests."""
        ids = self._image_ids[split]
        predictions = dict(zip(ids, hypotheses))
        result = self._scorer(split).score(predictions, self.references(split))
        metrics = {k: float(v) for k, v in result.items() if k not in ("per_example", "skipped")}
        per_example = {str(i): float(v) for i, v in result["per_example"]["CIDEr"].items()}
        details: dict[str, Any] = {"skipped": result.get("skipped", {})}
        submission = [{"image_id": int(i), "caption": c} for i, c in zip(ids, hypotheses)]
        return EvalResult(metrics, self.primary_value(metrics), per_example, submission, details)

    def fit_and_evaluate(self, fitted: Any, splits: list[str]) -> dict[str, EvalResult]:
        """Score a model that is fitted, not trained (a prompted one): one caption per image of each split.

        It is fitted on every (image, reference caption) pair of the training split, the rows its
        in-context examples are drawn from; it is asked once per image, with the image's id.
        """
        train = self._rows["train"].select_columns(["image_id", "caption"]).to_dict()
        fitted.fit([{"image_id": int(i), "caption": c} for i, c in zip(train["image_id"], train["caption"])])
        return {split: self.score(split, [str(c) for c in fitted.predict([{"image_id": i} for i in self._image_ids[split]])])
                for split in splits}

    def _role_of(self, predictions: list[dict[str, Any]]) -> Optional[str]:
        ids = [int(p["image_id"]) for p in predictions]
        for role in ("test", "validation", "train"):
            if self._image_ids.get(role) == ids:
                return role
        return None

    def write_predictions(self, predictions: Any, path: Path) -> Path:
        """COCO results JSON, plus the split's COCO captions annotation file beside it (for ``vlbench score``)."""
        from vlbench.data.coco_format import write_coco_captions
        from vlbench.io import atomic_write_json, references_path

        written = atomic_write_json(path, predictions, indent=None)
        role = self._role_of(predictions)
        if role is not None:
            write_coco_captions(self._rows[role], references_path(path))
        return written
