"""Frozen backbone with cached features: computed once per distinct input, exact, and reused across heads and seeds."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import SMALL, distinct_rows, needs_minilm, one_thread, tiny  # noqa: F401
from vlbench.training.frozen import CachedFeatureEncoder, FeatureCache, example_keys

FROZEN = {"method": "frozen", "cache_features": True}


def test_keys_cover_exactly_what_the_backbone_reads():
    ids = torch.tensor([[2, 7, 8, 3, 0], [2, 7, 8, 3, 0], [2, 7, 9, 3, 0]])
    mask = (ids != 0).long()
    pixels = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4), torch.zeros(3, 4, 4)])
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "pixel_values": pixels,
             "index": torch.arange(3)}
    text = example_keys(batch, ("text",))
    image = example_keys(batch, ("image",))
    both = example_keys(batch, ("text", "image"))
    assert text[0] == text[1] != text[2]
    assert image[0] == image[2] != image[1]
    assert len(set(both)) == 3
    # padding is not part of the input: the same question trimmed to another batch length has the same key
    trimmed = {**batch, "input_ids": ids[:, :4], "attention_mask": mask[:, :4], "token_type_ids": torch.zeros_like(ids[:, :4])}
    assert example_keys(trimmed, ("text",)) == text


def test_cached_features_equal_the_backbone_and_are_computed_once_per_image(tiny):
    assembled, task = tiny.build(tiny.config("image-only", config={**SMALL, "num_layers": 1}, peft=FROZEN))
    encoder = assembled.features
    assert isinstance(encoder, CachedFeatureEncoder) and assembled.model.encoder is encoder
    from vlbench.training.frozen import warm_cache

    computed = warm_cache(encoder, task, ["train", "validation", "test"], 64, torch.device("cpu"))
    images = sum(len(set(task._rows[s]["image_id"])) for s in ("train", "validation", "test"))
    questions = sum(task.num_examples(s) for s in ("train", "validation", "test"))
    assert computed == images < questions  # one backbone pass per image, not per question
    assembled.model.train()
    batch = task.collate("train", distinct_rows(task, 4), ("image",))
    with torch.no_grad():
        cached = encoder(batch).pooled
        direct = encoder.backbone.eval()(batch).pooled
    assert torch.allclose(cached, direct, atol=1e-5)
    assert encoder.computed == computed  # nothing recomputed
    trainable = {n for n, p in assembled.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)


def test_cache_file_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "f.safetensors")
    cache.add(b"a" * 20, torch.tensor([1.0, 2.0]))
    cache.add(b"b" * 20, torch.tensor([3.0, 4.0]))
    cache.save()
    again = FeatureCache(tmp_path / "f.safetensors")
    assert again.loaded_from_disk and len(again) == 2
    assert torch.equal(again.gather([b"b" * 20, b"a" * 20]), torch.tensor([[3.0, 4.0], [1.0, 2.0]]))
    (tmp_path / "torn.safetensors").write_bytes(b"not a safetensors file")
    assert len(FeatureCache(tmp_path / "torn.safetensors")) == 0  # recomputed, never trusted


def _run(results, *extra):
    from vlbench.cli.main import main

    return main(["run", "--task", "vqa", "--results-dir", str(results), "--max-steps", "3", "--batch-size", "16",
                 "--quiet", *TINY_DATA, *extra])


def _record(results, baseline, seed):
    return json.loads((results / "vqa" / "shapes" / baseline / f"seed-{seed}.json").read_text())


def test_from_config_backbone_gets_one_cache_per_seed(tmp_path, one_thread):
    small = ["--set", "baseline.config.hidden_size=16", "--set", "baseline.config.num_heads=2",
             "--set", "baseline.config.num_layers=1", "--set", "baseline.config.intermediate_size=32"]
    assert _run(tmp_path, "--baseline", "image-only", "--seeds", "0,1", "--set", "baseline.peft.method=frozen", *small) == 0
    first, second = _record(tmp_path, "image-only", 0), _record(tmp_path, "image-only", 1)
    # random backbones differ per seed, so their features do too
    assert first["features"]["file"] != second["features"]["file"]
    assert first["features"]["computed"] == second["features"]["computed"] > 0
    assert first["parameters"]["trainable"] < first["parameters"]["total"]
    assert first["weights_file"]


@needs_minilm
def test_pretrained_backbone_features_are_reused_across_seeds_and_heads(tmp_path, one_thread):
    assert _run(tmp_path, "--baseline", "text-minilm", "--seeds", "0,1") == 0
    first, second = _record(tmp_path, "text-minilm", 0), _record(tmp_path, "text-minilm", 1)
    assert first["features"]["file"] == second["features"]["file"]
    assert second["features"]["reused_from_disk"] and second["features"]["computed"] == 0
    # another head (a different learning rate and head-only training budget) reuses the same features
    assert _run(tmp_path / "other-head", "--baseline", "text-minilm", "--seeds", "0", "--lr", "3e-3") == 0
    other = _record(tmp_path / "other-head", "text-minilm", 0)
    assert other["features"]["file"] == first["features"]["file"] and other["features"]["computed"] == 0
    assert other["config_hash"] != first["config_hash"]
    assert first["parameters"]["trainable"] / first["parameters"]["total"] < 0.05
