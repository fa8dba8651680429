"""One run's training and scoring: build the model, train or fit it, score the test split, build its record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vlbench import distributed
from vlbench.data.base import default_cache_dir
from vlbench.models.base import FittedModel
from vlbench.models.pretrained import WORD_LEVEL, describe_pretrained, load_tokenizer, resolve_pretrained, tokenizer_signature
from vlbench.registry import MODELS
from vlbench.results.ablation import ablation_block
from vlbench.results.escape import rich_text
from vlbench.results.flips import flips_block
from vlbench.results.records import git_commit, now_iso, package_versions, record_header
from vlbench.specs import RunConfig
from vlbench.training.device import describe_device
from vlbench.progress import evaluation_progress
from vlbench.training.seeding import seed_everything
from vlbench.training.checkpoint import trainable_state
from vlbench.training.trainer import fit

__all__ = ["TokenizerCache", "run_one"]


def _count_parameters(model: Any) -> tuple[int, int]:
    if not isinstance(model, torch.nn.Module):
        return 0, 0
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


class TokenizerCache:
    """Tokenizers by source, each loaded once; the task is encoded with the one the current run declares.

    Every run reads text with the tokenizer its resolved config names (``baseline.tokenizer``), so a
    baseline's numbers never depend on which other baselines run beside it or which packages are installed.
    """

    def __init__(self, task: Any) -> None:
        self.task = task
        self._loaded: dict[str, Any] = {}
        self._signatures: dict[str, str] = {}
        self.prepared_for: Optional[str] = None

    def get(self, source: Optional[str] = None) -> Any:
        """The tokenizer ``source`` (None: word-level), with the task's splits encoded for it."""
        source = source or WORD_LEVEL
        if source not in self._loaded:
            tokenizer = load_tokenizer(source, self.task.training_texts())
            self._loaded[source] = tokenizer
            self._signatures[source] = tokenizer_signature(tokenizer)
        if self.prepared_for != source:
            self.task.prepare(self._loaded[source])
            self.prepared_for = source
        return self._loaded[source]

    def signature(self, source: Optional[str] = None) -> Optional[str]:
        """The vocabulary digest of a loaded tokenizer."""
        return self._signatures.get(source or WORD_LEVEL)

    @staticmethod
    def source_for(config: RunConfig) -> Optional[str]:
        """The tokenizer a baseline's numbers depend on (None: the model reads no text)."""
        reads_text = "text" in MODELS.get(config.baseline.model).modalities
        return (config.baseline.tokenizer or WORD_LEVEL) if reads_text else None


def _distributed_info(config: RunConfig) -> dict[str, Any]:
    """How many processes trained the run and the batch that one optimizer step saw across them."""
    world = distributed.world_size()
    cfg = config.training
    return {"world_size": world, "per_process_batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps,
            "global_batch_size": cfg.batch_size * cfg.grad_accum_steps * world}


def _emap(config: RunConfig, seed: int, task: Any, model: Any, modalities: tuple[str, ...], device: torch.device,
          progress: Any, label: str) -> dict[str, Any]:
    """The record's ``emap`` block: the trained model and its additive projection on the same test items."""
    from vlbench.tasks.emap import emap_block

    return distributed.on_main(lambda: emap_block(
        task, distributed.unwrap(model), "test", config.training.emap_items, seed, config.task.primary_metric,
        config.training.eval_batch_size, modalities, device, progress, f"{label} EMAP"))


def _invariance(config: RunConfig, test: Any, task: Any, model: Any, modalities: tuple[str, ...],
                device: torch.device) -> dict[str, Any]:
    """The record's ``eval_invariance`` block: the test pass at batch 1 (at the default batch if the run's is 1)."""
    from vlbench.results.invariance import invariance_block
    from vlbench.specs import TrainingConfig

    size = config.training.eval_batch_size
    other = 1 if size != 1 else TrainingConfig.model_fields["eval_batch_size"].default
    return invariance_block(test, size, lambda b: task.evaluate(model, "test", b, modalities, device), other)


def _robustness(config: RunConfig, seed: int, task: Any, model: Any, modalities: tuple[str, ...], tokenizer: Any,
                device: torch.device, clean: float) -> dict[str, Any]:
    """The record's ``robustness`` block: the trained model under the evaluation suites (docs/robustness.md)."""
    from vlbench.robustness import robustness_block

    settings = config.training.robustness
    return robustness_block(task, model, modalities, tokenizer, device, config.training.eval_batch_size, seed,
                            config.task.primary_metric, clean, settings.suites, settings.severities,
                            settings.attack_budgets, settings.attack_steps)


def run_one(config: RunConfig, seed: int, task: Any, dataset: Any, tokenizers: TokenizerCache, accelerator: Any,
            progress: Any, digest: str, cache_dir: Optional[Path] = None,
            checkpoint_dir: Optional[Path] = None, warn: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Train (or fit) and score one (baseline, seed); the record, with ``_predictions`` and ``_weights`` to write."""
    from vlbench.peft.apply import trained_state
    from vlbench.peft.assemble import assemble, warm_features

    start = time.perf_counter()
    seed_everything(seed)
    model_cls = MODELS.get(config.baseline.model)
    reads_text = "text" in model_cls.modalities or issubclass(model_cls, FittedModel)

    def build() -> tuple[Any, Any]:
        # always: the task's batches need the encoded targets even without text
        tokenizer = tokenizers.get(config.baseline.tokenizer)
        pretrained = resolve_pretrained(config.baseline.pretrained)
        # assemble also gives the task the encoder's image transform (its own processor for pretrained models)
        return tokenizer, assemble(config, seed, task, tokenizer if reads_text else None, pretrained=pretrained,
                                   tokenizer_source=tokenizers.source_for(config), data_fingerprint=dataset.fingerprint,
                                   cache_dir=Path(cache_dir) if cache_dir else default_cache_dir())

    tokenizer, assembled = distributed.agree(build)  # a process that cannot build the model fails them all
    built, modalities = assembled.model, assembled.modalities
    weights = features = ablation = emap = invariance = robustness = None
    eval_seconds = 0.0
    if isinstance(built, FittedModel):
        if callable(getattr(built, "attach", None)):
            built.attach(task)  # a model that reads images takes the task's image store and prompt from here
        results = distributed.on_main(lambda: task.fit_and_evaluate(built, ["validation", "test"]))
        validation, test = results["validation"], results["test"]
        fit_info: dict[str, Any] = {"history": [], "best_epoch": 0, "best_validation": validation.primary, "steps": 0,
                                    "stopped_early": False, "precision": None, **built.fit_details()}
        (trainable, total), train_seconds, examples = built.parameter_counts(), 0.0, 0
        if config.training.robustness is not None:
            robustness = {"skipped": "a fitted model (not trained by gradient descent): the suites score trained models"}
    else:
        model = built
        trainable, total = _count_parameters(model)
        label = rich_text(f"{config.baseline.name} s{seed}")  # progress descriptions are rich markup
        features = warm_features(assembled, task, config.training.eval_batch_size, accelerator.device, progress,
                                 f"{label} features")
        with evaluation_progress(progress, label):
            result = fit(model, task, config.training, accelerator=accelerator, seed=seed, modalities=modalities,
                         progress=progress, label=label, checkpoint_dir=checkpoint_dir, run_id=digest, warn=warn)
            test_start = time.perf_counter()
            test = task.evaluate(model, "test", config.training.eval_batch_size, modalities, accelerator.device)
            if "image" in modalities:  # how much the trained model's score depends on the image
                ablation = ablation_block(
                    dataset, config.task.primary_metric, test.metrics[config.task.primary_metric],
                    lambda: task.evaluate(model, "test", config.training.eval_batch_size, modalities,
                                          accelerator.device), image_ids=task.image_ids("test"), seed=seed,
                    flips=lambda blank: flips_block(task.flip_view("test", test), task.flip_view("test", blank)))
            if config.training.check_eval_invariance:  # the same test pass one example per batch
                invariance = _invariance(config, test, task, model, modalities, accelerator.device)
            if config.training.emap_items and "image" in modalities:
                emap = _emap(config, seed, task, model, modalities, accelerator.device, progress, label)
            if config.training.robustness is not None:
                robustness = _robustness(config, seed, task, model, modalities, tokenizer, accelerator.device,
                                         test.metrics[config.task.primary_metric])
            eval_seconds = result.eval_seconds + time.perf_counter() - test_start
        validation_best = result.best_validation
        fit_info = {"history": result.history, "best_epoch": result.best_epoch, "best_validation": validation_best,
                    "steps": result.steps, "stopped_early": result.stopped_early, "precision": result.precision,
                    **result.settings()}
        validation = None
        # the trainer counts its training epochs (across resumes) apart from its validation passes
        train_seconds, examples = result.train_seconds, result.train_examples
        if features is not None:
            train_seconds += features["seconds"]  # computing cached features is part of what training cost
        if assembled.peft is not None:
            weights = trained_state(accelerator.unwrap_model(model))
        elif config.training.keep_model:  # what training changed; assemble rebuilds the rest from the config
            weights = trainable_state(accelerator.unwrap_model(model))
    wall = time.perf_counter() - start
    return {
        **record_header(config, seed, digest, "ok"),
        "data": {"name": dataset.name, "source": config.dataset, "fingerprint": dataset.fingerprint, "info": dataset.info,
                 "sizes": {role: task.num_examples(role) for role in ("train", "validation", "test")},
                 "question_only": distributed.on_main(task.question_only)},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_device(accelerator.device),
        "distributed": _distributed_info(config),
        "created": now_iso(),
        "parameters": {"trainable": trainable, "total": total},
        "tokenizer": {"source": config.baseline.tokenizer or WORD_LEVEL, "vocab_size": len(tokenizer),
                      "signature": tokenizers.signature(config.baseline.tokenizer), "used": "text" in model_cls.modalities},
        "image_transform": assembled.image_transform.signature() if assembled.image_transform is not None else None,
        "pretrained": describe_pretrained(config.baseline.pretrained),
        "peft": assembled.summary.as_record() if assembled.summary is not None else None,
        "features": features,
        "modalities": list(modalities),
        "timing": {"wall_seconds": wall, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
                   "train_examples_per_second": examples / train_seconds if train_seconds else None},
        "training": fit_info,
        "validation": {"metrics": validation.metrics} if validation is not None else {"primary": fit_info["best_validation"]},
        "test": {"metrics": test.metrics, "details": test.details},
        "per_example": {"test": test.per_example},
        "ablation": ablation,
        "emap": emap,
        "eval_invariance": invariance,
        "robustness": robustness,
        "_predictions": test.predictions,
        "_weights": weights,
    }
