"""A resolved run config checked against its task type and model type, with every default written out.

Planning calls :func:`complete_config` on each run before any data is built, so a setting that cannot work
is one ``error:`` line (exit 2) with nothing trained, and the config that is hashed and recorded names every
setting: an explicitly written default and a left-out one give the same config, and so the same identity.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ValidationError

from vlbench.errors import SpecError
from vlbench.models.base import validate_model_config
from vlbench.registry import TASK_TYPES
from vlbench.specs import RunConfig, format_validation_error
from vlbench.tasks.training_options import training_options_problem

__all__ = ["complete_config", "code_identity"]


def _task_options(config: RunConfig) -> Any:
    task_cls = TASK_TYPES.get(config.task.type)
    try:
        options = task_cls.Options.model_validate(config.task.options)
    except ValidationError as exc:
        raise SpecError(format_validation_error(f"task {config.task.name!r} options", exc)) from exc
    problem = task_cls.primary_metric_problem(config.task.primary_metric, options)
    if problem:  # checkpoints are selected and early stopping decided on it: an unknown name must not train
        raise SpecError(f"task {config.task.name!r}: field 'primary_metric': {config.task.primary_metric!r} cannot "
                        f"select checkpoints of task type {config.task.type!r}: {problem}.")
    if config.training.emap_items and not task_cls.emap_outputs:
        with_it = ", ".join(sorted(n for n in TASK_TYPES.names() if TASK_TYPES.get(n).emap_outputs))
        raise SpecError(f"task {config.task.name!r}: field 'training.emap_items' (--emap): task type "
                        f"{config.task.type!r} gives no per-item output scores to project; EMAP applies to task "
                        f"types {with_it or 'none'}.")
    return options


def complete_config(config: RunConfig, source: str, peft: Optional[dict[str, Any]] = None) -> RunConfig:
    """``config`` with its task options and model settings validated and every default filled in.

    Also checked: the primary metric against what the task type reports, and the settings against each other
    (patches tile the task's images, a generation decoder's heads divide the width it takes from the encoder).

    ``peft`` is the run's PEFT block as ``vlbench.peft.config.complete_peft`` completed it (the caller
    passes it in: the peft package sits beside this one in the layer map, and must not be imported here).
    """
    options = _task_options(config)
    settings = validate_model_config(config.baseline.model, config.baseline.config, source)
    pretrained = bool(config.baseline.pretrained)
    problem = settings.task_problem(options.image_size, pretrained)
    decoder = getattr(options, "decoder", None)  # generation tasks: the decoder follows a from-config encoder's width
    if problem is None and decoder is not None and not pretrained:
        problem = decoder.encoder_problem(getattr(settings, "hidden_size", None))
    if problem is None:  # training.augment / training.adversarial against the task type and the model
        problem = training_options_problem(config, settings, peft)
    if problem:
        raise SpecError(f"{source} on task {config.task.name!r}: {problem}.")
    task = config.task.model_copy(update={"options": options.model_dump(mode="json")})
    baseline = config.baseline.model_copy(update={"config": settings.model_dump(mode="json"), "peft": peft})
    return config.model_copy(update={"task": task, "baseline": baseline})


def code_identity(config: RunConfig) -> dict[str, str]:
    """What the run's task type code does that changes numbers without a config field (its ``code_identity``)."""
    return dict(TASK_TYPES.get(config.task.type).code_identity)
