"""Tasks with models that write their outputs (``TextGenerator`` model types): training loss and generation.

A task wraps a text generator in :class:`GeneratingModel` instead of putting its head on it. The wrapper
keeps the generator as ``.encoder`` (so that ``peft:`` finds and freezes it as it does any encoder) and
its forward pass is the generator's language-model loss on the batch's prompts and targets, which the
task writes from the rows that the batch's ``index`` names. :func:`generate_split` writes one text per
example of a split, in the order of the split, with the generator's greedy decoding.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from vlbench.errors import SpecError
from vlbench.models.base import TextGenerator

__all__ = ["GeneratingModel", "is_generator", "require_prompt", "generate_split"]

# (example indices of the training split) -> (prompts, targets); a None target is read but not scored
TrainingTexts = Callable[[list[int]], tuple[list[str], list[Optional[str]]]]


def is_generator(encoder: Any) -> bool:
    """True for model types that write text instead of giving features."""
    return isinstance(encoder, TextGenerator)


def require_prompt(task: Any) -> Any:
    """The task spec's prompt template; a generating model cannot run without one."""
    if task.spec.prompt is None:
        raise SpecError(f"task {task.spec.name!r} has no `prompt:` block; baselines that generate their answers "
                        "read the task's prompt.query template (e.g. 'Question: {question} Answer:').")
    return task.spec.prompt


class GeneratingModel(nn.Module):
    """A text generator under a task: ``forward(batch)`` is its loss (a 0-d tensor) on the batch's texts."""

    def __init__(self, encoder: TextGenerator, training_texts: TrainingTexts) -> None:
        super().__init__()
        self.encoder = encoder
        self._training_texts = training_texts

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the targets of the training examples in ``batch`` after their prompts."""
        prompts, targets = self._training_texts(batch["index"].tolist())
        return self.encoder.text_loss(batch, prompts, targets)


@torch.no_grad()
def generate_split(task: Any, model: nn.Module, split: str, batch_size: int, modalities: tuple[str, ...],
                   device: torch.device, prompts_of: Callable[[list[int]], list[str]],
                   max_new_tokens: int) -> list[str]:
    """One generated text per example of ``split`` (every process's block, gathered in order)."""
    from vlbench.distributed import eval_batches, gather_list, unwrap

    generator = unwrap(model).encoder
    generator.eval()
    texts: list[str] = []
    for batch in eval_batches(task, split, batch_size, modalities):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        texts += generator.generate_text(batch, prompts_of(batch["index"].tolist()), max_new_tokens)
    return gather_list(texts)
