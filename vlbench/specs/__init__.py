"""Declarative task and baseline specs (YAML), validated with pydantic, plus ``--set`` overrides.

A task spec picks a registered task type, a dataset and training defaults; a baseline spec picks a
registered model type, its settings and the tasks it supports. Both are resolved into one ``RunConfig``
whose hash identifies a run. One module per concern:

* :mod:`~vlbench.specs.schema`: the pydantic schemas and name rules;
* :mod:`~vlbench.specs.yaml_loader`: the hardened YAML reader;
* :mod:`~vlbench.specs.discovery`: spec folders and loading a spec by name or path;
* :mod:`~vlbench.specs.overrides`: the ``--set key.path=value`` grammar;
* :mod:`~vlbench.specs.resolve`: task + baseline + overrides -> ``RunConfig`` (and its default tokenizer);
* :mod:`~vlbench.specs.identity`: the config hash and the fields it leaves out.
"""

from __future__ import annotations

from vlbench.specs.discovery import add_spec_dir, available_specs, load_baseline_spec, load_task_spec, spec_dirs
from vlbench.specs.identity import COSMETIC_FIELDS, IDENTITY_VERSION, config_hash
from vlbench.specs.overrides import apply_overrides, parse_override
from vlbench.specs.resolve import WORD_LEVEL, default_tokenizer, resolve_run_config
from vlbench.specs.schema import (
    DEFAULT_EMAP_ITEMS,
    ROBUSTNESS_SUITES,
    RobustnessSettings,
    MAX_LR,
    MAX_SEED,
    MAX_SEEDS,
    NAME_PATTERN,
    BaselineSpec,
    PromptTemplate,
    RunConfig,
    SplitNames,
    TaskSpec,
    TrainingConfig,
    TrainSubset,
    check_name,
    format_validation_error,
)
from vlbench.specs.yaml_loader import MAX_SPEC_BYTES, MAX_YAML_ALIASES, MAX_YAML_NODES, load_yaml, read_spec_file

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
    "default_tokenizer",
    "WORD_LEVEL",
    "config_hash",
    "COSMETIC_FIELDS",
    "IDENTITY_VERSION",
    "format_validation_error",
    "load_yaml",
    "read_spec_file",
    "check_name",
    "NAME_PATTERN",
    "MAX_SEED",
    "MAX_SEEDS",
    "MAX_LR",
    "DEFAULT_EMAP_ITEMS",
    "ROBUSTNESS_SUITES",
    "RobustnessSettings",
    "MAX_SPEC_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_NODES",
]
