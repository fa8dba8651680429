"""training.adversarial (FreeLB / VILLA): the perturbation stays in its ball, raises the loss, spares frozen weights."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tests.zoo_fixtures import SMALL, distinct_rows, one_thread, tiny  # noqa: F401
from vlbench.specs.robustness import AdversarialConfig
from vlbench.training.adversarial import EmbeddingAdversary, embedding_modules

VILT_SMALL = {**SMALL, "num_layers": 1}
MODELS = [("vilt", VILT_SMALL), ("text-bert", {**SMALL, "num_layers": 1}), ("film", {"hidden_size": 32}),
          ("coattention", {**SMALL, "num_layers": 1})]


def _ascend(model, task, batch, config, modalities):
    """Clean loss (eval mode: no dropout), the final perturbation after the K ascent steps, and the loss there."""
    adversary = EmbeddingAdversary(config, model, seed=0, modalities=modalities)
    loss_of = lambda b: task.loss(model(b), b)  # noqa: E731
    clean = loss_of(batch)
    perturbation = adversary.train_step(clean, batch, loss_of, lambda loss: loss.backward(), contextlib.nullcontext,
                                        epoch=1, number=1)
    with torch.no_grad(), adversary.perturbing(perturbation):
        perturbation.begin_pass()
        attacked = loss_of(batch)
    return float(clean.detach()), perturbation, float(attacked)


@pytest.mark.parametrize("name, settings", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_perturbation_stays_inside_epsilon_and_raises_the_loss(name, settings, norm, tiny):
    assembled, task = tiny.build(tiny.config(name, config=settings))
    model = assembled.model.eval()
    batch = task.collate("train", distinct_rows(task, 8), assembled.modalities)
    epsilon = 0.5 if norm == "l2" else 0.02
    config = AdversarialConfig(steps=4, epsilon=epsilon, step_size=epsilon / 2, norm=norm)
    clean, perturbation, attacked = _ascend(model, task, batch, config, assembled.modalities)
    assert {m for m, _ in perturbation.deltas} == set(assembled.modalities)
    for (modality, _), delta in perturbation.deltas.items():
        size = delta.flatten(1).norm(dim=1) if norm == "l2" else delta.flatten(1).abs().amax(1)
        assert (size <= epsilon * (1 + 1e-5)).all(), (modality, size)
        assert (size > 0).any()
    text = [d for (m, _), d in perturbation.deltas.items() if m == "text"]
    if text and text[0].dim() == 3 and text[0].shape[:2] == batch["attention_mask"].shape:
        assert not text[0][batch["attention_mask"] == 0].any(), "padding is never perturbed"
    assert attacked > clean


def test_every_built_in_joint_model_names_both_embedding_modules(tiny):
    for name, settings in MODELS + [("relation-network", {}), ("image-only", {**SMALL, "num_layers": 1})]:
        assembled, _ = tiny.build(tiny.config(name, config=settings or None))
        assert set(embedding_modules(assembled.model)) == set(assembled.modalities), name


def test_adversarial_steps_work_under_bf16_autocast(tiny):
    assembled, task = tiny.build(tiny.config("vilt", config=VILT_SMALL))
    model = assembled.model.train()
    batch = task.collate("train", distinct_rows(task, 8), assembled.modalities)
    adversary = EmbeddingAdversary(AdversarialConfig(steps=2), model, seed=0, modalities=assembled.modalities)

    def loss_of(b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return task.loss(model(b), b)

    perturbation = adversary.train_step(loss_of(batch), batch, loss_of, lambda loss: loss.backward(),
                                        contextlib.nullcontext, epoch=1, number=1)
    assert all(d.dtype == torch.float32 for d in perturbation.deltas.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_adversarial_training_under_lora_leaves_frozen_weights_bit_identical(tiny):
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "lora", "r": 4}))
    model = assembled.model
    named = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    cfg = TrainingConfig(max_steps=3, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-2, patience=0,
                         adversarial=AdversarialConfig(steps=2, epsilon=1.0, step_size=0.5))
    fit(model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    moved = {n for n, p in named.items() if not torch.equal(before[n], p.detach())}
    frozen = {n for n, p in named.items() if not p.requires_grad}
    assert frozen and not moved & frozen
    assert any(".lora_" in n for n in moved)
    word = model.encoder.vilt.embeddings.text_embeddings.word_embeddings
    assert not word._forward_hooks, "the perturbation's hooks are gone after training"
