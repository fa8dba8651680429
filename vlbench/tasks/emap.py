"""EMAP: does a trained model use the interaction of image and text, or only the sum of two unimodal signals?

Hessel & Lee (EMNLP 2020), "Does my multimodal model learn cross-modal interactions? It's harder to tell than
you might think!": over N test items (text t_i, image v_i), the empirical multimodally-additive function
projection of a model's outputs f is

    f̂(t_i, v_i) = mean_j f(t_i, v_j) + mean_j f(t_j, v_i) − mean_{j,k} f(t_j, v_k)

(each output dimension on its own: for VQA, every answer's logit). f̂ is the best additive approximation
of f on those items, so if f̂ scores as well as f under the task's metric, the model's gain from the image
needs no interaction with the question. It costs N² forward passes: every text with every image, in
batches of pairs. Nothing of the model is separated: a dual encoder's fusion head must see every pair too.

The sums are accumulated pair batch by pair batch (O(N·C) memory for C outputs), in float64 on the CPU.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from vlbench.specs import DEFAULT_EMAP_ITEMS

__all__ = ["DEFAULT_EMAP_ITEMS", "AdditiveProjection", "additive_projection", "emap_items", "pair_chunks",
           "emap_scores", "emap_block"]



class AdditiveProjection:
    """Running sums of f(t_i, v_j) over N texts and N images, fed in any order and any batches of pairs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._rows: Optional[torch.Tensor] = None  # (N, C): sum over images j of f(t_i, v_j)
        self._cols: Optional[torch.Tensor] = None  # (N, C): sum over texts i of f(t_i, v_j)
        self._diagonal: Optional[torch.Tensor] = None  # (N, C): f(t_i, v_i)
        self._seen = torch.zeros(n, n, dtype=torch.bool)

    def add(self, texts: torch.Tensor, images: torch.Tensor, outputs: torch.Tensor) -> None:
        """Outputs (B, C) of the pairs (texts[b], images[b]), positions in 0..N-1; each pair exactly once."""
        outputs = outputs.detach().to("cpu", torch.float64).reshape(len(texts), -1)
        texts, images = texts.to("cpu", torch.long), images.to("cpu", torch.long)
        if self._rows is None:
            width = outputs.shape[1]
            self._rows, self._cols, self._diagonal = (torch.zeros(self.n, width, dtype=torch.float64) for _ in range(3))
        if bool(self._seen[texts, images].any()):
            raise ValueError("a pair of items was given twice")
        self._seen[texts, images] = True
        self._rows.index_add_(0, texts, outputs)
        self._cols.index_add_(0, images, outputs)
        own = texts == images
        self._diagonal[texts[own]] = outputs[own]

    def _complete(self) -> None:
        if self._rows is None or not bool(self._seen.all()):
            missing = int((~self._seen).sum())
            raise ValueError(f"{missing} of the {self.n * self.n} pairs were never given")

    def diagonal(self) -> torch.Tensor:
        """(N, C) the model's own outputs f(t_i, v_i)."""
        self._complete()
        return self._diagonal.clone()

    def projected(self) -> torch.Tensor:
        """(N, C) the additive projection f̂(t_i, v_i)."""
        self._complete()
        grand = self._rows.sum(0) / (self.n * self.n)
        return self._rows / self.n + self._cols / self.n - grand


def additive_projection(pair_outputs: torch.Tensor) -> torch.Tensor:
    """f̂(t_i, v_i) for every i from a full (N, N, ...) tensor whose [i, j] is f(t_i, v_j)."""
    n = pair_outputs.shape[0]
    projection = AdditiveProjection(n)
    texts, images = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    projection.add(texts.reshape(-1), images.reshape(-1), pair_outputs.reshape(n * n, -1))
    return projection.projected().reshape(n, *pair_outputs.shape[2:])


def emap_items(num_examples: int, requested: int, seed: int) -> list[int]:
    """The test positions EMAP uses: all of them, or a seeded sample of ``requested`` (sorted)."""
    if requested >= num_examples:
        return list(range(num_examples))
    chosen = np.random.default_rng(seed).choice(num_examples, size=requested, replace=False)
    return sorted(int(i) for i in chosen)


def pair_chunks(n: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (text position, image position) pair of N items, in batches of at most ``batch_size`` pairs."""
    texts, images = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    texts, images = texts.reshape(-1), images.reshape(-1)
    return [(texts[s:s + batch_size], images[s:s + batch_size]) for s in range(0, n * n, max(1, batch_size))]


def emap_scores(n: int, pair_outputs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                score: Callable[[torch.Tensor], dict[str, float]], batch_size: int,
                progress: Optional[Callable[[int], None]] = None) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics of f, metrics of f̂) on N items.

    ``pair_outputs(texts, images)`` gives the outputs (B, C) of those pairs of positions; ``score(outputs)``
    the task's metrics of one (N, C) output per item. ``progress`` hears how many pairs each batch held.
    """
    projection = AdditiveProjection(n)
    for texts, images in pair_chunks(n, batch_size):
        projection.add(texts, images, pair_outputs(texts, images))
        if progress is not None:
            progress(len(texts))
    return score(projection.diagonal()), score(projection.projected())


def emap_block(task: Any, model: Any, split: str, requested: int, seed: int, metric: str, batch_size: int,
               modalities: Sequence[str], device: torch.device, progress: Any = None,
               label: str = "EMAP") -> dict[str, Any]:
    """The record's ``emap`` block of a trained model on ``split`` (a ``skipped`` reason when it cannot apply)."""
    why = task.emap_problem(model)
    if why:
        return {"skipped": why}
    items = emap_items(task.num_examples(split), requested, seed)
    if len(items) < 2:
        return {"skipped": f"the {split} split has fewer than 2 items"}
    positions = torch.as_tensor(items, dtype=torch.long)
    bar = progress.add_task(label, total=len(items) ** 2) if progress is not None else None

    @torch.no_grad()
    def outputs(texts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        batch = task.pair_batch(split, positions[texts].tolist(), positions[images].tolist(), tuple(modalities))
        return task.pair_outputs(model, {k: v.to(device, non_blocking=True) for k, v in batch.items()})

    model.eval()
    advance = (lambda k: progress.update(bar, advance=k)) if bar is not None else None
    try:
        own, additive = emap_scores(len(items), outputs, lambda out: task.emap_metrics(split, items, out),
                                    batch_size, advance)
    finally:
        if bar is not None:
            progress.remove_task(bar)
    name = metric if metric in own and metric in additive else "accuracy" if "accuracy" in own else next(iter(own))
    return {"metric": name, "items": len(items), "pairs": len(items) ** 2, "seed": seed, "split": split,
            "model": float(own[name]), "emap": float(additive[name]), "gap": float(own[name] - additive[name])}
