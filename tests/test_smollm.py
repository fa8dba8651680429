"""SmolLM2-135M-Instruct really loads from the offline GGUF and is used right: it answers a factual chat
question, and its perplexity on plain English is far below that of its random twin (same config).

Loading dequantises 272 tensors to fp32 (tens of seconds on 2 cores), so the model loads once per module.
"""

from __future__ import annotations

import pytest
import torch

from tests.smollm_fixtures import gguf_reader, smollm2_gguf  # noqa: F401

# plain English prose, nothing SmolLM2 could have memorised verbatim
PARAGRAPH = (
    "The museum opens at nine in the morning and closes at five in the afternoon. Visitors can buy tickets at the "
    "entrance or online, and children under twelve enter for free. The garden behind the main building is a quiet "
    "place to rest after a long walk through the galleries."
)


@pytest.fixture(scope="module")
def smollm(smollm2_gguf, gguf_reader):  # noqa: F811
    """(model, tokenizer) loaded from the installed GGUF, once for this module."""
    from vlbench.models.smollm import load_gguf_model, load_gguf_tokenizer

    return load_gguf_model(smollm2_gguf), load_gguf_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def twin(smollm):
    """The from-scratch twin: SmolLM2's config, random weights."""
    from vlbench.models.smollm import random_twin

    return random_twin(smollm[0], seed=0)


def test_weights_are_the_pinned_smollm2(smollm):
    model, tokenizer = smollm
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert next(model.parameters()).dtype == torch.float32  # Q4_1 dequantised
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6  # 135M parameters
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


def test_answers_a_factual_chat_prompt(smollm):
    from vlbench.models.smollm import chat_prompt

    model, tokenizer = smollm
    prompt = chat_prompt(tokenizer, "What is the capital of France?")
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"SmolLM2 answered: {answer!r}")
    assert "Paris" in answer


def test_perplexity_far_below_random_twin(smollm, twin):
    from vlbench.models.smollm import perplexity

    model, tokenizer = smollm
    assert twin.config.to_dict() == model.config.to_dict()
    assert not torch.equal(twin.model.embed_tokens.weight, model.model.embed_tokens.weight)
    pretrained, scratch = perplexity(model, tokenizer, PARAGRAPH), perplexity(twin, tokenizer, PARAGRAPH)
    print(f"perplexity on plain English: SmolLM2 {pretrained:.1f}, random twin {scratch:.1f}")
    assert pretrained < scratch / 10
    assert pretrained < 100  # pretrained text, not just a less bad random model


def test_spec_reference_resolves_to_the_verified_file(smollm2_gguf):  # noqa: F811
    from vlbench.models.pretrained import describe_pretrained, pretrained_identity, resolve_pretrained
    from vlbench.models.smollm import SMOLLM2_REF, smollm2_identity
    from vlbench.models.wheel_weights import SMOLLM2, file_sha256

    assert resolve_pretrained(SMOLLM2_REF) == str(smollm2_gguf)
    assert file_sha256(smollm2_gguf) == SMOLLM2.sha256
    info = describe_pretrained(SMOLLM2_REF)
    assert info["package_version"] == SMOLLM2.version and info["sha256"] == SMOLLM2.sha256
    assert pretrained_identity(SMOLLM2_REF) == smollm2_identity() and SMOLLM2.sha256 in smollm2_identity()
    assert pretrained_identity(None) is None  # other weights are identified by content too: tests/test_identity.py
