"""Planning checks of the robustness options (``training.augment``, ``training.adversarial``) against a run.

An option that would change a task's right answers, that a model type cannot take, or that a feature cache
would silently undo is refused before anything is built: one ``error:`` line, exit 2 (docs/robustness.md).
"""

from __future__ import annotations

from typing import Any, Optional

from vlbench.models.base import Encoder, EncoderConfig, TextGenerator, perturbable_modalities
from vlbench.registry import MODELS, TASK_TYPES
from vlbench.specs import RunConfig

__all__ = ["training_options_problem"]


def _caches_features(peft: Optional[dict[str, Any]]) -> bool:
    return bool(peft) and peft.get("method") == "frozen" and bool(peft.get("cache_features", True))


def _not_trained(config: RunConfig, option: str) -> Optional[str]:
    model = config.baseline.model
    if issubclass(MODELS.get(model), Encoder):
        return None
    return f"model type {model!r} is fitted, not trained by gradient descent on batches: {option} does not apply to it"


def _augment_problem(config: RunConfig, settings: EncoderConfig, peft: Optional[dict[str, Any]]) -> Optional[str]:
    augment = config.training.augment
    assert augment is not None
    model = config.baseline.model
    cls = MODELS.get(model)
    problem = _not_trained(config, "training.augment") or TASK_TYPES.get(config.task.type).label_rules.problem(
        augment, config.task.type)
    if problem:
        return problem
    images, texts = augment.image_augmentations(), augment.text_augmentations()
    if issubclass(cls, TextGenerator) and (texts or augment.flip):
        return (f"augment.{(texts or ['flip'])[0]} does not reach model type {model!r}: it reads the task's prompts and "
                "target strings, not token ids (image augmentations other than flip apply)")
    if _caches_features(peft):
        return ("training.augment cannot reach a frozen backbone whose features are cached per input (peft.method "
                "frozen, cache_features true): set baseline.peft.cache_features=false to augment")
    cached = settings.cached_inputs()
    if "image" in cached and images:
        return (f"augment.{images[0]} cannot reach a frozen image part whose features are cached per image (every "
                "augmented image would be computed and cached anew): set baseline.config.image_part.freeze=false to "
                "fine-tune it, or drop the image augmentations")
    if "text" in cached and texts:
        return (f"augment.{texts[0]} cannot reach a frozen text stream whose outputs are memoised per question: set "
                "baseline.config.freeze_text=false, or drop the text augmentations")
    return None


def _adversarial_problem(config: RunConfig, peft: Optional[dict[str, Any]]) -> Optional[str]:
    adversarial = config.training.adversarial
    assert adversarial is not None
    problem = _not_trained(config, "training.adversarial")
    if problem:
        return problem
    model = config.baseline.model
    cls = MODELS.get(model)
    reads, perturbable = tuple(cls.modalities), perturbable_modalities(cls)
    for modality in adversarial.modalities or reads:
        if modality not in reads:
            return (f"adversarial.modalities names {modality!r}, but model type {model!r} reads "
                    f"{' and '.join(reads) or 'nothing'} only; use modalities [{', '.join(reads)}]")
        if modality not in perturbable:
            return f"model type {model!r} names no embedding modules to perturb: it cannot be trained adversarially"
    if _caches_features(peft):
        return ("training.adversarial cannot reach a frozen backbone whose features are cached per input (peft.method "
                "frozen, cache_features true): set baseline.peft.cache_features=false")
    return None


def training_options_problem(config: RunConfig, settings: EncoderConfig,
                             peft: Optional[dict[str, Any]]) -> Optional[str]:
    """Why the run's ``training.augment`` or ``training.adversarial`` cannot be used as given (None: they can)."""
    if config.training.augment is not None:
        problem = _augment_problem(config, settings, peft)
        if problem:
            return problem
    if config.training.adversarial is not None:
        return _adversarial_problem(config, peft)
    return None
