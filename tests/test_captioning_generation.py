"""Greedy and beam search (vlbench.tasks.generation) on tiny random encoder-decoders.

References are independent of the search code: teacher-forced scoring of whole sequences (the
decoder's non-incremental path, no key/value cache) and brute-force enumeration of every sequence.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from vlbench.models.base import EncoderOutput
from vlbench.models.decoder import DecoderSpec, EncoderDecoder, build_text_decoder
from vlbench.tasks.generation import TargetVocab, beam_search, generate, greedy_search, sequence_log_prob

PAD, BOS, EOS = TargetVocab.PAD, TargetVocab.BOS, TargetVocab.EOS


class _ToyEncoder(nn.Module):
    """Memory that depends on the batch's ``source`` floats, so different examples decode differently."""

    hidden_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 16 * 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        seq = self.proj(batch["source"]).view(-1, 2, 16)
        return EncoderOutput(pooled=seq[:, 0], sequence=seq, mask=torch.ones(seq.shape[:2], dtype=torch.long))


def _toy_model(seed: int, vocab_size: int = 9, scale: float = 1.0) -> EncoderDecoder:
    torch.manual_seed(seed)
    spec = DecoderSpec(num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0, attention_dropout=0.0)
    model = EncoderDecoder(_ToyEncoder(), build_text_decoder(spec, 16, vocab_size, max_length=12, pad_id=PAD)).eval()
    with torch.no_grad():
        # sharper output distributions than BERT's 0.02 init, so that the searches disagree sometimes
        model.decoder.cls.predictions.decoder.weight.mul_(scale)
        model.decoder.bert.embeddings.word_embeddings.weight.normal_(0, scale)
    return model


def _batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"index": torch.arange(n), "source": torch.randn(n, 3, generator=g) * 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed: int) -> None:
    model, batch = _toy_model(seed, scale=1.0), _batch(6, seed)
    greedy = greedy_search(model, batch, max_length=7, bos=BOS, eos=EOS, pad=PAD)
    beam = beam_search(model, batch, beam_size=1, max_length=7, bos=BOS, eos=EOS, pad=PAD)
    width = min(greedy.tokens.shape[1], beam.tokens.shape[1])
    assert torch.equal(greedy.tokens[:, :width], beam.tokens[:, :width])
    torch.testing.assert_close(greedy.scores, beam.scores)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scores_equal_teacher_forced_log_probs(seed: int) -> None:
    """The cached, incremental path scores a sequence exactly as the full forward pass does."""
    model, batch = _toy_model(seed, scale=1.0), _batch(5, seed)
    for out in (greedy_search(model, batch, max_length=7, bos=BOS, eos=EOS, pad=PAD),
                beam_search(model, batch, beam_size=3, max_length=7, bos=BOS, eos=EOS, pad=PAD)):
        torch.testing.assert_close(out.scores, sequence_log_prob(model, batch, out.tokens, EOS), atol=1e-4, rtol=1e-4)


def test_beam_is_at_least_as_likely_as_greedy() -> None:
    wins = 0
    for seed in range(6):
        model, batch = _toy_model(seed, scale=1.0), _batch(8, 100 + seed)
        greedy = greedy_search(model, batch, max_length=7, bos=BOS, eos=EOS, pad=PAD)
        beam = beam_search(model, batch, beam_size=4, max_length=7, bos=BOS, eos=EOS, pad=PAD)
        assert bool((beam.scores >= greedy.scores - 1e-5).all())
        wins += int((beam.scores > greedy.scores + 1e-5).sum())
    assert wins > 0, "the toy models should give beam search something to find beyond greedy"


@pytest.mark.parametrize("seed", [0, 1])
def test_wide_beam_finds_the_most_likely_sequence(seed: int) -> None:
    """With a beam wider than the number of sequences, beam search is exhaustive."""
    vocab, max_length = 6, 3
    model, batch = _toy_model(seed, vocab_size=vocab, scale=1.0), _batch(3, seed)
    beam = beam_search(model, batch, beam_size=vocab**max_length, max_length=max_length, bos=BOS, eos=EOS, pad=PAD)
    # every sequence beam search can return: words then EOS, or max_length words without EOS
    words = [t for t in range(vocab) if t not in (PAD, BOS, EOS)]
    candidates = []
    for length in range(max_length):
        for seq in itertools.product(words, repeat=length):
            candidates.append(list(seq) + [EOS] + [PAD] * (max_length - length - 1))
    candidates += [list(seq) for seq in itertools.product(words, repeat=max_length)]
    # BOS and PAD may also be generated (nothing forbids them); include sequences with them too
    extra = [t for t in (PAD, BOS)]
    for seq in itertools.product(words + extra, repeat=max_length):
        if any(t in extra for t in seq):
            candidates.append(list(seq))
    tokens = torch.tensor(candidates)
    for i in range(batch["index"].shape[0]):
        one = {"index": batch["index"][i : i + 1].repeat(len(candidates)), "source": batch["source"][i : i + 1].repeat(len(candidates), 1)}
        best = float(sequence_log_prob(model, one, tokens, EOS).max())
        assert float(beam.scores[i]) == pytest.approx(best, abs=1e-4)


def test_length_penalty_prefers_longer_final_beams() -> None:
    model, batch = _toy_model(3, scale=1.0), _batch(8, 7)
    raw = beam_search(model, batch, beam_size=4, max_length=7, bos=BOS, eos=EOS, pad=PAD, length_penalty=0.0)
    normed = beam_search(model, batch, beam_size=4, max_length=7, bos=BOS, eos=EOS, pad=PAD, length_penalty=1.0)
    assert bool((raw.scores >= normed.scores - 1e-5).all())  # the raw ranking takes the most likely final beam

    def length(t: torch.Tensor) -> int:
        row = t.tolist()
        return row.index(EOS) + 1 if EOS in row else len(row)

    assert sum(map(length, normed.tokens)) >= sum(map(length, raw.tokens))


def test_generate_dispatches_and_vocab_round_trips() -> None:
    # hyphens, apostrophes, abbreviations, decimal commas and quotes: the spacing of each must come back
    texts = ["Ein kleiner roter Kreis ist über einem großen Quadrat.", "Es gibt ein Dreieck.",
             "Ein Mann im T-Shirt liest z.B. eine E-Mail.", "Das Schild sagt: „3,5 Meter“ (ca.)!",
             "L'homme d'aujourd'hui porte un t-shirt ; « oui » ?", "A man's dog isn't on the U.S. off-road trail."]
    vocab = TargetVocab.build(texts)
    for text in texts:
        assert vocab.decode(vocab.encode(text, 40)[1:]) == text
    assert vocab.decode([vocab.stoi["Es"], EOS, vocab.stoi["gibt"]]) == "Es"
    assert vocab.encode("unbekannt Wort", 40) == [BOS, vocab.UNK, vocab.UNK, EOS]
    assert len(vocab.encode("Ein kleiner roter Kreis ist über", 5)) == 5
    lower = TargetVocab.build(["A Red circle.", "A man's T-shirt."], lowercase=True)
    assert lower.decode(lower.encode("A RED circle.", 10)[1:]) == "a red circle."
    assert lower.decode(lower.encode("A Man's t-Shirt.", 10)[1:]) == "a man's t-shirt."
    model, batch = _toy_model(0, vocab_size=len(vocab)), _batch(2, 0)
    g = generate(model, batch, beam_size=1, max_length=5, length_penalty=0.0, vocab=vocab)
    b = generate(model, batch, beam_size=2, max_length=5, length_penalty=0.0, vocab=vocab)
    assert g.tokens.shape[0] == b.tokens.shape[0] == 2
