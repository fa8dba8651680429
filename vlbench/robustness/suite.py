"""The evaluation suites of a trained model: corrupted images, perturbed questions and a PGD attack.

Each suite scores the test split again under one condition with the task's own ``evaluate`` and records
the task's primary metric. Images are corrupted in the dataset's image store (before the model's own
transform); texts are re-encoded with the run's tokenizer; the attack replaces each evaluation batch's
pixels (``TaskType.batch_filter``). Frozen parts and backbones whose features are cached compute on the
corrupted or attacked inputs directly while a suite runs (``bypass_cache``): a corrupted image is never
read from, nor written to, the clean feature cache. Text-only models are not corrupted or attacked: they
cannot be affected, and the block says so.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from vlbench.results.ablation import images_served_by
from vlbench.robustness.attack import STEP_FACTOR, PGDBatches, pixel_scale
from vlbench.robustness.corruptions import CORRUPTIONS, CorruptedImageStore, severity_parameters
from vlbench.robustness.text_perturb import REPHRASINGS_NOTE, TEXT_PERTURBATIONS, perturb_texts
from vlbench.specs import ROBUSTNESS_SUITES

__all__ = ["SUITES", "TEXT_ONLY", "uncached", "corrupted_images", "robustness_block"]

SUITES = ROBUSTNESS_SUITES
TEXT_ONLY = "the model reads no image: unaffected by construction (not run)"
_SPLIT = "test"


@contextlib.contextmanager
def uncached(model: Any) -> Iterator[None]:
    """Within the block, every module with a feature cache computes on its inputs instead (see ``bypass_cache``)."""
    modules = [m for m in model.modules() if hasattr(m, "bypass_cache")] if isinstance(model, torch.nn.Module) else []
    before = [m.bypass_cache for m in modules]
    for m in modules:
        m.bypass_cache = True
    try:
        yield
    finally:
        for m, value in zip(modules, before):
            m.bypass_cache = value


def corrupted_images(dataset: Any, name: str, severity: int,
                     seed: int) -> contextlib.AbstractContextManager[CorruptedImageStore]:
    """Within the block, ``dataset.images`` answers with corrupted images (the store is yielded)."""
    return images_served_by(dataset, CorruptedImageStore(dataset.images, name, severity, seed))


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 10)


def _first_test_image(task: Any) -> Any:
    """The test split's first decoded image (uint8 H x W x 3): its size scales the blur and sets PGD's pixel scale."""
    first = task.image_ids(_SPLIT)[0]
    store = task.dataset.images
    return store.load(first) if hasattr(store, "load") else store.get([first])[0].numpy()


def _corruptions(task: Any, score: Callable[[], float], severities: list[int], seed: int, clean: float) -> dict[str, Any]:
    image = _first_test_image(task)
    side = int(min(image.shape[:2]))
    by_corruption: dict[str, list[Optional[float]]] = {}
    for name in CORRUPTIONS:
        by_corruption[name] = []
        for severity in severities:
            with corrupted_images(task.dataset, name, severity, seed) as corrupted:
                value = score()
            by_corruption[name].append(value if corrupted.calls else None)
    by_severity = [_round(_mean([scores[i] for scores in by_corruption.values()])) for i in range(len(severities))]
    # rounded: a mean of equal scores must equal them (a drop of -2e-16 would print as -0.0%)
    mean = _round(_mean([v for scores in by_corruption.values() for v in scores]))
    parameters = severity_parameters(side)
    return {"applies": True, "severities": severities, "image_side": side, "by_corruption": by_corruption,
            "by_severity": by_severity, "mean": mean,
            "relative_drop": (clean - mean) / clean if mean is not None and clean else None,
            "parameters": {name: {"parameter": p["parameter"], "values": [p["values"][s - 1] for s in severities]}
                           for name, p in parameters.items()}}


def _text(task: Any, score: Callable[[], float], tokenizer: Any, seed: int) -> dict[str, Any]:
    originals = task.input_texts(_SPLIT)
    out: dict[str, Any] = {"applies": True, "rephrasings": {"applies": False, "reason": REPHRASINGS_NOTE}}
    for kind, rates in TEXT_PERTURBATIONS.items():
        scores = []
        for rate in rates:
            texts = perturb_texts(originals, kind, rate, seed)
            restore = task.replace_input_texts(_SPLIT, texts, tokenizer)
            try:
                scores.append(score())
            finally:
                restore()
        out[kind] = {"rates": list(rates), "scores": scores,
                     "example": [originals[0], perturb_texts(originals[:1], kind, rates[-1], seed)[0]]}
    return out


def _attack(task: Any, model: torch.nn.Module, score: Callable[[], float], budgets: list[float], steps: int,
            seed: int, device: torch.device) -> dict[str, Any]:
    from vlbench.data.images import SquareResize

    problem = task.attack_problem(model)
    if problem is not None:
        return {"applies": False, "reason": problem}
    image = _first_test_image(task)
    transform = task.image_transform if task.image_transform is not None else SquareResize(task.options.image_size)
    scale = pixel_scale(transform, tuple(image.shape))
    robust, loss_clean, loss_attacked = [], [], []
    for budget in budgets:
        attack = PGDBatches(lambda batch: task.attack_loss(model, _SPLIT, batch), scale, budget / 255.0, steps, seed,
                            device)
        task.batch_filter = attack
        try:
            value = score()
        finally:
            task.batch_filter = None
        robust.append(value if attack.calls else None)
        loss_clean.append(attack.loss_clean / max(attack.calls, 1))
        loss_attacked.append(attack.loss_attacked / max(attack.calls, 1))
    return {"applies": True, "method": "PGD, L-inf (Madry et al. 2018)", "budgets": [float(b) for b in budgets],
            "budget_unit": "1/255 of the pixel range", "steps": steps, "step_size": f"{STEP_FACTOR} * eps / steps",
            "random_start": True, "robust": robust, "loss_clean": loss_clean, "loss_attacked": loss_attacked,
            "space": "the image the model reads (after its resize or crop, before its normalisation)"}


def robustness_block(task: Any, model: torch.nn.Module, modalities: tuple[str, ...], tokenizer: Any,
                     device: torch.device, batch_size: int, seed: int, metric: str, clean: float,
                     suites: Sequence[str], severities: Sequence[int], budgets: Sequence[float],
                     steps: int) -> dict[str, Any]:
    """The record's ``robustness`` block: the test split's ``metric`` under each condition of ``suites``."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown robustness suite {unknown[0]!r}; use {', '.join(SUITES)}")
    from vlbench.distributed import unwrap

    model = unwrap(model)

    def score() -> float:
        return float(task.evaluate(model, _SPLIT, batch_size, modalities, device).metrics[metric])

    block: dict[str, Any] = {"metric": metric, "split": _SPLIT, "seed": seed, "clean": clean, "suites": list(suites)}
    reads_image = "image" in modalities
    with uncached(model):
        if "corruptions" in suites:
            block["corruptions"] = (_corruptions(task, score, list(severities), seed, clean) if reads_image
                                    else {"applies": False, "reason": TEXT_ONLY, "text_only": True})
        if "text" in suites:
            texts = task.input_texts(_SPLIT) if "text" in modalities else None
            block["text"] = (_text(task, score, tokenizer, seed) if texts is not None else
                             {"applies": False, "reason": "the model reads no text" if "text" not in modalities
                              else f"task type {task.spec.type!r} gives the model no text to perturb"})
        if "attack" in suites:
            block["attack"] = (_attack(task, model, score, list(budgets), steps, seed, device) if reads_image
                               else {"applies": False, "reason": TEXT_ONLY, "text_only": True})
    return block
