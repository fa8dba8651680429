"""Text augmentations on batched token ids, one random draw per token: word-order noise, masking, dropout.

Only the word pieces of the input text change: special tokens ([CLS], [SEP], [PAD], [MASK]...) keep their
places, and padding stays padding. Word-order noise follows Lample et al. (ICLR 2018, "Unsupervised
machine translation using monolingual corpora only"): piece i moves to the rank of i + U(0, k + 1) among
the pieces, so that none moves more than k places. Dropout deletes pieces and closes the gaps (the
attention mask shrinks with the text); masking replaces pieces by the tokenizer's mask token.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["word_pieces", "shuffle_words", "mask_tokens", "drop_tokens"]


def word_pieces(ids: torch.Tensor, attention: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the attended positions that hold a word piece (no special token)."""
    return attention.bool() & ~torch.isin(ids, special_ids.to(ids.device))


def shuffle_words(ids: torch.Tensor, words: torch.Tensor, window: int, generator: torch.Generator) -> torch.Tensor:
    """``ids`` with each row's word pieces reordered so that none moves more than ``window`` places."""
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device).expand_as(ids).float()
    keys = positions + (window + 1) * torch.rand(ids.shape, generator=generator).to(ids.device)
    far = float(2 * length + window + 2)
    new_order = torch.argsort(torch.where(words, keys, far), dim=1, stable=True)  # pieces by key, then the rest
    slots = torch.argsort(torch.where(words, positions, far), dim=1, stable=True)  # the pieces' own places
    out = ids.clone()
    count = words.sum(1, keepdim=True)
    valid = torch.arange(length, device=ids.device).expand_as(ids) < count
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
    out[rows[valid], slots[valid]] = ids[rows[valid], new_order[valid]]
    return out


def mask_tokens(ids: torch.Tensor, words: torch.Tensor, p: float, mask_id: int,
                generator: torch.Generator) -> torch.Tensor:
    """``ids`` with each word piece replaced by ``mask_id`` with probability ``p``."""
    hit = (torch.rand(ids.shape, generator=generator).to(ids.device) < p) & words
    return ids.masked_fill(hit, mask_id)


def drop_tokens(batch: dict[str, torch.Tensor], words: torch.Tensor, p: float, pad_id: int,
                generator: torch.Generator, key: str = "input_ids") -> dict[str, torch.Tensor]:
    """The batch's text with each word piece deleted with probability ``p``; what follows moves up, the mask shrinks."""
    ids, attention = batch[key], batch["attention_mask"]
    dropped = (torch.rand(ids.shape, generator=generator).to(ids.device) < p) & words
    keep = attention.bool() & ~dropped
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device).expand_as(ids)
    order = torch.argsort(positions + length * (~keep).long(), dim=1, stable=True)  # kept positions first, in order
    new_attention = (positions < keep.sum(1, keepdim=True)).to(attention.dtype)
    out = dict(batch)
    out[key] = ids.gather(1, order).masked_fill(new_attention == 0, pad_id)
    out["attention_mask"] = new_attention
    types: Optional[torch.Tensor] = batch.get("token_type_ids")
    if types is not None:
        out["token_type_ids"] = types.gather(1, order).masked_fill(new_attention == 0, 0)
    return out
