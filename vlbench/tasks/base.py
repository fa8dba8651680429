"""The contract of a task type: data preparation, heads, losses, evaluation and prediction files.

A task type turns one table of a built dataset into batches for models, wraps a model type's encoder
with the task's head, and scores predictions with the task's metric. Data flows one way:
dataset table -> batches -> model -> loss / predictions -> metric -> ``EvalResult``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlbench.data.base import VLDataset
from vlbench.data.pipeline import require_columns, split_roles
from vlbench.data.resident import index_batch
from vlbench.errors import SpecError
from vlbench.specs import TaskSpec, format_validation_error
from vlbench.progress import track
from vlbench.specs.schema import SettingsModel
from vlbench.training.augment import AugmentInputs, LabelRules, tokenizer_inputs

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["TaskOptions", "EvalResult", "metric_matches", "BatchCollator", "TaskType"]


MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 4096
MIN_TEXT_LENGTH, MAX_TEXT_LENGTH = 2, 65536


class TaskOptions(SettingsModel):
    """Base for the ``options:`` block of a task spec."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    image_size: int = Field(64, description=f"side of the square images models read, {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels")
    max_text_length: int = Field(32, description=f"tokens per text, {MIN_TEXT_LENGTH}..{MAX_TEXT_LENGTH} (special tokens "
                                 "included)")

    # validators, not Field bounds: task types redeclare these fields with their own defaults, and keep the checks
    @field_validator("image_size")
    @classmethod
    def _image_size_range(cls, value: int) -> int:
        if not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size {value} is outside {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} pixels")
        return value

    @field_validator("max_text_length")
    @classmethod
    def _text_length_range(cls, value: int) -> int:
        if not MIN_TEXT_LENGTH <= value <= MAX_TEXT_LENGTH:
            raise ValueError(f"max_text_length {value} is outside {MIN_TEXT_LENGTH}..{MAX_TEXT_LENGTH} tokens (a text "
                             "needs room for its [CLS] and [SEP] tokens)")
        return value


@dataclass
class EvalResult:
    """Scores of one split: flat metrics for tables, the primary value, per-example scores, predictions."""

    metrics: dict[str, float]
    primary: float
    per_example: dict[str, float] = field(default_factory=dict)
    predictions: Any = None
    details: dict[str, Any] = field(default_factory=dict)


class BatchCollator:
    """The ``collate_fn`` of a task's DataLoader: a top-level class, so worker processes can receive it by pickling."""

    def __init__(self, task: "TaskType", split: str, modalities: tuple[str, ...]) -> None:
        self.task = task
        self.split = split
        self.modalities = tuple(modalities)

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """One batch of the split for these example indices (through the task's ``batch_filter`` when one is set)."""
        batch = self.task.collate(self.split, list(indices), self.modalities)
        batch_filter = getattr(self.task, "batch_filter", None)
        return batch if batch_filter is None else batch_filter(self.split, batch)


def metric_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` is the metric ``pattern`` stands for (``accuracy/<answer type>``: any ``accuracy/X``)."""
    fixed, bracket, _ = pattern.partition("<")
    return name == pattern if not bracket else name.startswith(fixed) and len(name) > len(fixed)


class TaskType:
    """Base class for registered task types (see ``vlbench.tasks.vqa`` for a complete one)."""

    table: ClassVar[str] = ""
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    # the metrics its validation reports that can select checkpoints (``primary_metric``): each one higher-is-better;
    # "<...>" marks a part the data decides (accuracy/<answer type>). Empty: not declared, not checked.
    metric_names: ClassVar[tuple[str, ...]] = ()
    predictions_suffix: ClassVar[str] = ".json"
    # whether its models give per-item output scores that EMAP can project (see vlbench.tasks.emap)
    emap_outputs: ClassVar[bool] = False
    # what the task type's code does that changes its numbers with no config field to say so (e.g. how generated
    # text is detokenized): it enters every run's config hash (vlbench.plan), so records made before a change to it
    # never mix with later ones; change a value whenever that code changes its numbers
    code_identity: ClassVar[dict[str, str]] = {}
    # the model's image transform (set per baseline by the runner); None: square resize to options.image_size
    image_transform: Optional[Any] = None
    # set for one evaluation pass by vlbench.robustness (a PGD attack): (split, collated batch) -> the batch to use
    batch_filter: Optional[Callable[[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = None
    # which training augmentations keep its labels, and how a flip rewrites its texts (docs/robustness.md)
    label_rules: ClassVar[LabelRules] = LabelRules()

    def __init__(self, spec: TaskSpec, dataset: VLDataset) -> None:
        self.spec = spec
        self.dataset = dataset
        # set by the runner before each baseline: the model's own transform (None: square resize to image_size)
        self.image_transform: Optional[Any] = None
        self.tokenizer: Any = None  # the tokenizer of the last ``prepare``
        try:
            self.options = self.Options.model_validate(spec.options)
        except ValidationError as exc:
            raise SpecError(format_validation_error(f"task {spec.name!r} options", exc)) from exc

    @classmethod
    def primary_metric_problem(cls, name: str, options: TaskOptions) -> Optional[str]:
        """Why ``name`` cannot select this task type's checkpoints under ``options``; None when it can."""
        if not cls.metric_names or any(metric_matches(p, name) for p in cls.metric_names):
            return None
        return f"its validation reports {', '.join(cls.metric_names)}"

    def primary_value(self, metrics: dict[str, float]) -> float:
        """The value of the spec's ``primary_metric``: what selects the best checkpoint and stops early."""
        name = self.spec.primary_metric
        if name not in metrics:
            raise SpecError(f"task {self.spec.name!r}: primary_metric {name!r} is not among the metrics this split "
                            f"reports ({', '.join(metrics)}).")
        return float(metrics[name])

    # --- preparation -------------------------------------------------------------------------------
    def training_texts(self) -> list[str]:
        """Texts of the training split, for building a word-level vocabulary."""
        raise NotImplementedError

    def prepare(self, tokenizer: Any) -> None:
        """Tokenize and index the splits for one tokenizer (called once per tokenizer)."""
        raise NotImplementedError

    def build_context_extras(self) -> dict[str, Any]:
        """Task facts a model type may need when it is built (e.g. the number of answers)."""
        return {}

    def augment_inputs(self) -> AugmentInputs:
        """What training augmentation needs of the prepared task: the flip's rewrites of the input text (subclasses
        add their answers or targets), the tokenizer's special and mask ids, the pixel normalisation."""
        from vlbench.data.images import SquareResize

        transform = self.image_transform if self.image_transform is not None else SquareResize(self.options.image_size)
        normalisation = transform.normalisation() if callable(getattr(transform, "normalisation", None)) else None
        return tokenizer_inputs(self.tokenizer, self.label_rules.side_words, normalisation)

    # --- models ------------------------------------------------------------------------------------
    def wrap(self, encoder: torch.nn.Module) -> torch.nn.Module:
        """Put the task head on an encoder; the result maps a batch to task outputs."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of one batch."""
        raise NotImplementedError

    # --- data --------------------------------------------------------------------------------------
    def num_examples(self, split: str) -> int:
        """Number of examples in a split."""
        raise NotImplementedError

    def collate(self, split: str, indices: list[int], modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """A batch for the given example indices; image tensors only when the model reads images."""
        raise NotImplementedError

    def set_loading(self, num_workers: int = 0, pin_memory: bool = False) -> None:
        """How this task's DataLoaders load: worker processes, and page-locked batches for fast GPU copies."""
        self._loading = (int(num_workers), bool(pin_memory))

    def loader(
        self,
        split: str,
        batch_size: int,
        modalities: tuple[str, ...],
        *,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> "DataLoader":
        """A torch DataLoader for one pass over a split (seeded shuffling when training).

        One loader serves one pass: a task type may change what a pass yields (see ``Seq2SeqTask``),
        and worker processes started for the pass see the task as it is when the pass begins.
        """
        from torch.utils.data import DataLoader

        num_workers, pin_memory = getattr(self, "_loading", (0, False))
        return DataLoader(
            range(self.num_examples(split)),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=BatchCollator(self, split, modalities),
            num_workers=num_workers,
            pin_memory=pin_memory,
        )

    def index_loader(self, split: str, batch_size: int, *, shuffle: bool = False,
                     generator: Optional[torch.Generator] = None) -> "DataLoader":
        """A DataLoader yielding only each batch's example positions, in the order :meth:`loader` yields batches.

        It is the same DataLoader over the same sampler, drawing from ``generator`` exactly as :meth:`loader`
        does, so a pass's order and the generator's state after it do not depend on which of the two is used.
        """
        from torch.utils.data import DataLoader

        return DataLoader(range(self.num_examples(split)), batch_size=batch_size, shuffle=shuffle,
                          generator=generator, collate_fn=index_batch)

    def resident_split(self, split: str, modalities: tuple[str, ...], device: torch.device,
                       budget: int) -> Optional[Any]:
        """The split's model inputs kept on ``device`` (a :class:`vlbench.data.resident.ResidentSplit`), or None.

        None (the default) means: this task type cannot, or the split does not fit in ``budget`` bytes;
        training then collates each batch through :meth:`loader`. A task type whose :meth:`collate` gives
        per-example rows (and does not change between passes) can return ``build_resident(...)``.
        """
        return None

    def batches(
        self,
        split: str,
        batch_size: int,
        modalities: tuple[str, ...],
        *,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches over a split (an evaluation pass shows a progress bar under the run's label)."""
        loader = self.loader(split, batch_size, modalities, shuffle=shuffle, generator=generator)
        if shuffle:
            return iter(loader)
        return track(loader, len(loader), f"scoring {split}")

    def image_ids(self, split: str) -> list[int]:
        """The distinct image ids a split role reads, in first-seen order (its table's ``image_id`` column)."""
        name = split_roles(self.spec)[split]
        rows = require_columns(self.dataset, self.table, name, ["image_id"])
        return list(dict.fromkeys(int(i) for i in rows["image_id"]))

    # --- evaluation --------------------------------------------------------------------------------
    def evaluate(
        self, model: torch.nn.Module, split: str, batch_size: int, modalities: tuple[str, ...], device: torch.device
    ) -> EvalResult:
        """Predict a split with a neural model and score it."""
        raise NotImplementedError

    def fit_and_evaluate(self, fitted: Any, splits: list[str]) -> dict[str, EvalResult]:
        """Fit a non-neural model on train and score the given splits."""
        raise NotImplementedError

    def flip_view(self, split: str, result: EvalResult) -> Optional[dict[str, Any]]:
        """One pass's items for :mod:`vlbench.results.flips` (score, group, question, answer, image id), or None."""
        return None

    def question_only(self) -> Optional[dict[str, Any]]:
        """What the question alone scores on the test split (the data's bounds for text-only models), or None."""
        return None

    # --- EMAP (vlbench.tasks.emap): a task type whose model gives per-item output scores can take part --------
    def emap_problem(self, model: torch.nn.Module) -> Optional[str]:
        """Why EMAP cannot project this trained model's outputs (None when it can)."""
        return f"task type {self.spec.type!r} gives no per-item output scores to project"

    def pair_batch(self, split: str, text_items: list[int], image_items: list[int],
                   modalities: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """A batch whose row b pairs the text of item ``text_items[b]`` with the image of ``image_items[b]``."""
        raise NotImplementedError

    def pair_outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's output scores (B, C) on a :meth:`pair_batch` (what the task's prediction is an argmax of)."""
        raise NotImplementedError

    def emap_metrics(self, split: str, items: list[int], outputs: torch.Tensor) -> dict[str, float]:
        """The task's metrics of one output row (N, C) per item of ``split`` at positions ``items``."""
        raise NotImplementedError

    # --- robustness suites (vlbench.robustness) -----------------------------------------------------------
    def input_texts(self, split: str) -> Optional[list[str]]:
        """The text each example of ``split`` gives the model (questions, captions), or None when it gives none."""
        return None

    def replace_input_texts(self, split: str, texts: list[str], tokenizer: Any) -> Callable[[], None]:
        """Encode ``texts`` in place of the split's :meth:`input_texts`; returns what puts the originals back."""
        raise NotImplementedError

    def attack_problem(self, model: torch.nn.Module) -> Optional[str]:
        """Why a test-time attack on the pixels cannot use this task's training loss for ``model`` (None: it can)."""
        return f"task type {self.spec.type!r} gives no per-batch training loss on its evaluation batches"

    def attack_loss(self, model: torch.nn.Module, split: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task's training loss of ``model`` on one evaluation batch of ``split`` (what PGD ascends)."""
        raise NotImplementedError

    def write_predictions(self, predictions: Any, path: Path) -> Path:
        """Write predictions in the task's official submission format (atomically)."""
        from vlbench.io import atomic_write_json

        return atomic_write_json(path, predictions, indent=None)
