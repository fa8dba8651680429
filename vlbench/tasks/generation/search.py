"""Greedy and beam search over any model with ``start(batch)`` / ``step(state, tokens)``, and sequence scores.

See ``vlbench.models.decoder.EncoderDecoder``. Beam search ranks hypotheses by their summed
log-probability; a finished hypothesis stays in the beam with its score frozen, so beam size 1 is
exactly greedy search. The returned hypothesis maximises ``score / length ** length_penalty`` among
the final beams (``length_penalty`` 0: the most likely sequence found).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from vlbench.models.decoder import EncoderDecoder
from vlbench.tasks.generation.vocabulary import TargetVocab

__all__ = ["SearchOutput", "greedy_search", "beam_search", "generate", "sequence_log_prob"]


class SearchOutput:
    """Generated ids (N, L) without BOS (EOS then PAD after the end) and their summed log-probabilities (N,)."""

    def __init__(self, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        self.tokens = tokens
        self.scores = scores


@torch.no_grad()
def greedy_search(model: Any, batch: dict[str, torch.Tensor], *, max_length: int, bos: int, eos: int, pad: int) -> SearchOutput:
    """Most likely next token at every step, until EOS or ``max_length`` generated tokens."""
    state = model.start(batch)
    n = state.memory.shape[0]
    device = state.memory.device
    last = torch.full((n, 1), bos, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    scores = torch.zeros(n, device=device)
    out = []
    for _ in range(max_length):
        log_probs, state = model.step(state, last)
        best, token = log_probs.max(-1)
        scores += torch.where(finished, torch.zeros_like(best), best)
        token = torch.where(finished, torch.full_like(token, pad), token)
        out.append(token)
        finished |= token == eos
        last = token.unsqueeze(1)
        if bool(finished.all()):
            break
    return SearchOutput(torch.stack(out, 1) if out else torch.zeros((n, 0), dtype=torch.long, device=device), scores)


def _lengths(tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Generated length counting EOS (the whole row when there is none)."""
    is_eos = tokens == eos
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(tokens[:, 0], tokens.shape[1]))
    return first.clamp(min=1)


@torch.no_grad()
def beam_search(
    model: Any,
    batch: dict[str, torch.Tensor],
    *,
    beam_size: int,
    max_length: int,
    bos: int,
    eos: int,
    pad: int,
    length_penalty: float = 0.0,
) -> SearchOutput:
    """Beam search over summed log-probabilities; returns the best final beam per example."""
    state = model.start(batch)
    n = state.memory.shape[0]
    k = beam_size
    device = state.memory.device
    state = state.select(torch.arange(n, device=device).repeat_interleave(k))
    # only the first beam is live at the start, so the k beams do not all pick the same tokens
    scores = torch.full((n, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(n * k, dtype=torch.bool, device=device)
    history = torch.zeros((n * k, 0), dtype=torch.long, device=device)
    last = torch.full((n * k, 1), bos, dtype=torch.long, device=device)
    for _ in range(max_length):
        log_probs, state = model.step(state, last)
        vocab = log_probs.shape[-1]
        # a finished beam can only continue with PAD, at no cost, so its score stays as it was
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, pad] = 0.0
        log_probs = torch.where(finished.unsqueeze(1), frozen, log_probs)
        total = (scores.view(-1, 1) + log_probs).view(n, k * vocab)
        scores, flat = total.topk(k, dim=1)
        origin = flat // vocab + torch.arange(n, device=device).unsqueeze(1) * k
        token = (flat % vocab).view(-1)
        origin = origin.view(-1)
        state = state.select(origin)
        history = torch.cat([history.index_select(0, origin), token.unsqueeze(1)], 1)
        finished = finished.index_select(0, origin) | (token == eos)
        last = token.unsqueeze(1)
        if bool(finished.all()):
            break
    ranking = scores
    if length_penalty:
        ranking = scores / _lengths(history, eos).view(n, k).float() ** length_penalty
    best = ranking.argmax(1) + torch.arange(n, device=device) * k
    return SearchOutput(history.index_select(0, best), scores.view(-1).index_select(0, best))


def generate(model: Any, batch: dict[str, torch.Tensor], *, beam_size: int, max_length: int, length_penalty: float,
             vocab: TargetVocab) -> SearchOutput:
    """Greedy search for beam size 1, beam search otherwise."""
    common = dict(max_length=max_length, bos=vocab.BOS, eos=vocab.EOS, pad=vocab.PAD)
    if beam_size <= 1:
        return greedy_search(model, batch, **common)
    return beam_search(model, batch, beam_size=beam_size, length_penalty=length_penalty, **common)


@torch.no_grad()
def sequence_log_prob(model: EncoderDecoder, batch: dict[str, torch.Tensor], tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Summed log-probability of generated ``tokens`` (N, L; no BOS) under teacher forcing, up to EOS."""
    n = tokens.shape[0]
    bos = torch.full((n, 1), TargetVocab.BOS, dtype=torch.long, device=tokens.device)
    inputs = torch.cat([bos, tokens[:, :-1]], 1) if tokens.shape[1] else bos[:, :0]
    keep = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) < _lengths(tokens, eos).unsqueeze(1)
    feed = dict(batch, decoder_input_ids=inputs, decoder_attention_mask=torch.ones_like(inputs),
                target_owner=torch.arange(n, device=tokens.device))
    logp = F.log_softmax(model(feed).float(), -1).gather(2, tokens.unsqueeze(2)).squeeze(2)
    return (logp * keep).sum(1)
