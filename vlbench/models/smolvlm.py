"""SmolLM2 that writes answers, alone or reading images the LLaVA way: image part -> projector -> visual tokens.

The language model is SmolLM2-135M-Instruct from its GGUF (``vlbench.models.smollm``), or its random twin.
Images go through a frozen image part (EfficientNet-Lite0, features cached per image), whose cell grid the
part average-pools to a few cells (``visual_tokens``), and a trained projector (LLaVA-1.5's two-layer MLP, GELU) maps each cell
to one input embedding of the language model. As in LLaVA, a row of token ids marks where the visual
tokens go (here with :data:`PLACEHOLDER`, an id no tokenizer produces); their embeddings are put in
those positions, in order, before the language model runs. Nothing here was pretrained on image-text
pairs: the projector always starts from scratch.

Rows are lists of ids; :meth:`SmolVLM.loss` scores target tokens only (every prompt and visual position is
masked with -100), :meth:`SmolVLM.generate_ids` decodes greedily from left-padded prompts.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vlbench.errors import VLBenchError

__all__ = ["PLACEHOLDER", "Projector", "SmolVLM"]

PLACEHOLDER = -1  # marks a visual position in a row of token ids


class Projector(nn.Sequential):
    """LLaVA-1.5's projector: Linear(image width, LM width) -> GELU -> Linear(LM width, LM width)."""

    def __init__(self, image_width: int, lm_width: int) -> None:
        super().__init__(nn.Linear(image_width, lm_width), nn.GELU(), nn.Linear(lm_width, lm_width))


class SmolVLM(nn.Module):
    """A causal LM with an optional image part and projector; rows of ids in, a loss or generated ids out."""

    def __init__(self, lm: nn.Module, tokenizer: Any, image: Optional[nn.Module] = None,
                 projector: Optional[nn.Module] = None) -> None:
        super().__init__()
        if (image is None) != (projector is None):
            raise VLBenchError("SmolVLM: an image part needs a projector, and a projector an image part.")
        self.lm, self.tokenizer, self.image, self.projector = lm, tokenizer, image, projector
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)
        self.hidden_size = int(lm.config.hidden_size)

    # --- text and images -> rows -------------------------------------------------------------------
    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as the language model reads it (no special tokens added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens (end of turn, padding) dropped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    @property
    def tokens_per_image(self) -> int:
        """How many visual tokens one image becomes (0 without an image part)."""
        if self.image is None:
            return 0
        side = self.image.grid or (self.image.preprocessing.size + 31) // 32
        return side * side

    def image_transform(self) -> Any:
        """How images reach the part: its uint8 centre crops, finished (and cached) inside the part."""
        return self.image.model_transform()

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N images, tokens_per_image, LM width): the part's pooled cells through the projector."""
        if self.image is None:
            raise VLBenchError("this SmolLM2 model reads no images.")
        return self.projector(self.image(pixel_values).sequence)

    def embed(self, rows: Sequence[Sequence[int]], visual: Optional[torch.Tensor], *,
              left_pad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input embeddings (B, L, H), attention mask and padded ids; ``visual`` fills the PLACEHOLDER positions.

        ``visual`` is (images, tokens, H) or (positions, H), in the order the placeholders appear row by row.
        """
        device = self.lm.get_input_embeddings().weight.device
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            start = width - len(row) if left_pad else 0
            ids[i, start:start + len(row)] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, start:start + len(row)] = 1
        ids, mask = ids.to(device), mask.to(device)
        marked = ids == PLACEHOLDER
        embeds = self.lm.get_input_embeddings()(ids.masked_fill(marked, self.pad_id))
        wanted = int(marked.sum())
        if wanted or visual is not None:
            source = visual.reshape(-1, embeds.shape[-1]) if visual is not None else embeds.new_zeros((0, embeds.shape[-1]))
            if source.shape[0] != wanted:
                raise VLBenchError(f"{wanted} visual positions in the rows but {source.shape[0]} visual tokens.")
            embeds = embeds.masked_scatter(marked.unsqueeze(-1), source.to(embeds.dtype))
        return embeds, mask, ids

    # --- training and generation -------------------------------------------------------------------
    def loss(self, prompts: Sequence[Sequence[int]], targets: Sequence[Optional[Sequence[int]]],
             visual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean next-token cross-entropy over the target tokens and the end mark after each; prompts are masked.

        A row whose target is None (an answer outside the task's answers) is read but not scored.
        """
        rows, scored = [], []
        for prompt, target in zip(prompts, targets):
            tail = [] if target is None else list(target) + [self.eos_id]
            rows.append(list(prompt) + tail)
            scored.append((len(prompt), len(tail)))
        embeds, mask, ids = self.embed(rows, visual, left_pad=False)
        labels = torch.full_like(ids, -100)
        for i, (start, length) in enumerate(scored):
            labels[i, start:start + length] = ids[i, start:start + length]
        if not bool((labels != -100).any()):
            return embeds.sum() * 0.0  # nothing to score in this batch: a zero that keeps the graph
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask).logits
        # position t predicts token t + 1
        return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=-100)

    @torch.no_grad()
    def generate_ids(self, prompts: Sequence[Sequence[int]], visual: Optional[torch.Tensor],
                     max_new_tokens: int) -> list[list[int]]:
        """Greedy continuation of each (left-padded) prompt, up to the end mark or ``max_new_tokens``."""
        embeds, mask, _ = self.embed(prompts, visual, left_pad=True)
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                               do_sample=False, num_beams=1, eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        rows = []
        for row in out.tolist():
            cut = row.index(self.eos_id) if self.eos_id in row else len(row)
            rows.append(row[:cut])
        return rows
