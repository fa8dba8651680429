"""Training objectives of retrieval: symmetric InfoNCE, and drawing in-batch negatives for image-text matching."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["contrastive_loss", "sample_negatives"]


def contrastive_loss(text_emb: torch.Tensor, image_emb: torch.Tensor, logit_scale: torch.Tensor,
                     keys: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of pairs; pairs of the same image (equal ``keys``) are all positives."""
    logits = logit_scale * text_emb.float() @ image_emb.float().t()
    positive = (keys[:, None] == keys[None, :]).float()
    targets = positive / positive.sum(1, keepdim=True)
    t2i = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    i2t = -(targets * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (t2i + i2t) / 2


def sample_negatives(weights: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One column per row drawn with probability ~ ``weights`` among ``allowed`` ones; rows with none are dropped."""
    rows = torch.nonzero(allowed.any(1), as_tuple=True)[0]
    if rows.numel() == 0:
        return rows, rows
    w = (weights[rows] * allowed[rows]).float()
    w = w + 1e-6 * allowed[rows].float()  # rows whose softmax underflowed still draw among the allowed
    return rows, torch.multinomial(w, 1).squeeze(1)
