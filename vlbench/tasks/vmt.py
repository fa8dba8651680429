"""Multimodal machine translation: a source sentence (and its image) to a target sentence, sacreBLEU-scored.

Any dataset with a ``vmt`` table (``image_id``, a source column, a target column; one row per sentence
pair, as in Multi30k) plugs in; ``options.source_field`` picks the source column, so the shapes world's
full (``source``) and entity-masked (``source_masked``) variants are two task specs over one table.
Text-only model types read the source tokens only; multimodal ones also read the image (ViLT: the
patches are extra encoder tokens beside the source tokens). The same decoder serves every baseline.

A model type that writes text itself (``TextGenerator``, e.g. ``smollm-llava``) replaces the decoder: it learns
each reference after the task's ``prompt.query`` filled with the pair's ``{source}``, and translates greedily.

Predictions are one hypothesis per line in example order (sacrebleu's convention), written with the
references beside them (``<stem>.ref.txt``), so ``vlbench score --task vmt -p P -r R`` reproduces the
run's BLEU and chrF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from vlbench.data.pipeline import require_columns
from vlbench.tasks.base import EvalResult
from vlbench.tasks.generation import Seq2SeqOptions, Seq2SeqTask
from vlbench.training.augment import LabelRules

__all__ = ["VMTOptions", "VMTTask"]


class VMTOptions(Seq2SeqOptions):
    """Options of the vmt task type."""

    max_text_length: int = 32
    max_target_length: int = 24
    source_field: str = Field("source", description="source column of the vmt table, e.g. source or source_masked")
    target_field: str = Field("target", description="target column of the vmt table")
    id_field: str = Field("pair_id", description="sentence id column (keys of per-example scores)")


class VMTTask(Seq2SeqTask):
    """Translation over a dataset's ``vmt`` table; metrics from ``vlbench.metrics.translation``."""

    table = "vmt"
    Options = VMTOptions
    metric_names = ("BLEU", "chrF")
    predictions_suffix = ".txt"
    lowercase_targets = False  # sacreBLEU is case-sensitive
    # the reference translation names sides in a target language whose side words are not declared here
    label_rules = LabelRules(flip="refused", flip_reason="the target language's words for left and right are not "
                             "declared, so a mirrored image would leave the reference translation wrong",
                             names_colours=True)

    def __init__(self, spec, dataset) -> None:
        super().__init__(spec, dataset)
        opts = self.options
        self._source_text: dict[str, list[str]] = {}
        self._ids: dict[str, list[Any]] = {}
        for role, name in self.split_names.items():
            wanted = ["image_id", opts.source_field, opts.target_field]
            rows = require_columns(dataset, self.table, name, wanted, "Set options.source_field / options.target_field.")
            id_col = [opts.id_field] if opts.id_field in rows.column_names else []
            cols = rows.select_columns(wanted + id_col).to_dict()
            self._image_ids[role] = [int(i) for i in cols["image_id"]]
            self._source_text[role] = list(cols[opts.source_field])
            self._targets[role] = [[t] for t in cols[opts.target_field]]
            self._ids[role] = list(cols[opts.id_field]) if id_col else list(range(len(rows)))
        self._setup_targets()

    def _sources(self, role: str) -> list[str]:
        """The source sentence of every pair of a role."""
        return self._source_text[role]

    def replace_input_texts(self, split, texts, tokenizer):
        """The source texts, as encoded tokens and as a generating model's ``{source}``; returns the undo."""
        undo = super().replace_input_texts(split, texts, tokenizer)
        sources = self._source_text[split]
        self._source_text[split] = list(texts)

        def restore() -> None:
            undo()
            self._source_text[split] = sources

        return restore

    def prompt_fields(self, split: str, index: int) -> dict[str, str]:
        """A generating model's prompt names the pair's source sentence as ``{source}``."""
        return {"source": self._source_text[split][index]}

    def generation_budget(self, generator: Any) -> int:
        """The longest training reference in the generator's own tokens, end mark included.

        ``max_target_length`` counts the task decoder's words; a subword LM spells a German word in several
        tokens, so its budget is measured in its tokens on the references it learnt.
        """
        return int(generator.target_length(self.references("train")))

    def references(self, role: str) -> list[str]:
        """One reference per pair of a role, in order."""
        return [ts[0] for ts in self._targets[role]]

    def score(self, split: str, hypotheses: list[str]) -> EvalResult:
        """sacreBLEU corpus BLEU (primary) and chrF; sentence BLEU per pair for significance tests."""
        from vlbench.metrics.translation import translation_evaluate

        result = translation_evaluate(hypotheses, [self.references(split)])
        metrics = {"BLEU": result["BLEU"], "chrF": result["chrF"]}
        ids = self._ids[split]
        per_example = {str(ids[i]): float(v) for i, v in result["per_example"]["BLEU"].items()}
        details = {"signatures": result["signatures"], "BLEU_detail": result["BLEU_detail"],
                   "source_field": self.options.source_field, "split": self.split_names[split]}
        return EvalResult(metrics, self.primary_value(metrics), per_example, list(hypotheses), details)

    def _role_of(self, hypotheses: list[str]) -> Optional[str]:
        for role in ("test", "validation", "train"):
            if len(self._image_ids.get(role, ())) == len(hypotheses):
                return role
        return None

    def write_predictions(self, predictions: Any, path: Path) -> Path:
        """One hypothesis per line (sacrebleu's format), and the references beside it."""
        from vlbench.io import TEXT_REFERENCES, atomic_write_text, references_path

        written = atomic_write_text(path, "".join(_one_line(h) + "\n" for h in predictions))
        role = self._role_of(list(predictions))
        if role is not None:
            atomic_write_text(references_path(path, TEXT_REFERENCES), "".join(_one_line(r) + "\n" for r in self.references(role)))
        return written


def _one_line(text: str) -> str:
    # a line break inside a hypothesis would shift every later line of the file
    return " ".join(text.split())
