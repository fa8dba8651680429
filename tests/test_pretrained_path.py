"""The pretrained path end to end, offline: tiny BERT / ViLT / ResNet-50 checkpoints saved by the tests.

Each checkpoint is randomly initialised, saved in the layout ``from_pretrained`` reads (config, weights,
tokenizer, image processor), and loaded through ``pretrained: DIR`` exactly as a hub download would be.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_DATA
from tests.pretrained_fixtures import WORDS, checkpoints, tokenizer as _tokenizer  # noqa: F401
from tests.zoo_fixtures import one_thread  # noqa: F401

def _read(results, baseline):
    return json.loads((results / "vqa" / "shapes" / baseline / "seed-0.json").read_text())


def test_pretrained_vilt_loads_the_checkpoint_and_its_processor(checkpoints):
    from safetensors.torch import load_file

    from vlbench.data.images import ProcessorTransform
    from vlbench.models.base import BuildContext
    from vlbench.models.vilt import ViltConfigSpec, ViltEncoder

    context = BuildContext("vqa", _tokenizer(), image_size=64, max_text_length=24)
    encoder = ViltEncoder.from_spec(ViltConfigSpec(patch_embedding="linear", pooling="cls"), str(checkpoints["vilt"]),
                                    context)
    saved = load_file(str(checkpoints["vilt"] / "model.safetensors"))
    key = "embeddings.patch_embeddings.projection.weight"
    stored = saved.get(key, saved.get("vilt." + key))
    assert torch.equal(encoder.vilt.embeddings.patch_embeddings.projection.weight, stored)
    transform = encoder.image_transform()
    assert isinstance(transform, ProcessorTransform) and "ViltImageProcessor" in transform.signature()
    # a from-config ViLT keeps the task's square resize
    scratch = ViltEncoder.from_spec(ViltConfigSpec(hidden_size=32, num_heads=2, intermediate_size=64), None, context)
    assert scratch.image_transform() is None


def test_padded_variable_size_images_give_the_same_output_as_alone(checkpoints):
    """Through the processor's padding and pixel_mask, a small image batched beside a large one is encoded
    exactly as when it is alone (padding patches are masked out)."""
    from vlbench.models.base import BuildContext
    from vlbench.models.vilt import ViltConfigSpec, ViltEncoder

    tokenizer = _tokenizer()
    context = BuildContext("vqa", tokenizer, image_size=64, max_text_length=24)
    encoder = ViltEncoder.from_spec(ViltConfigSpec(), str(checkpoints["vilt"]), context).eval()
    transform = encoder.image_transform()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    wide = rng.integers(0, 256, (64, 112, 3), dtype=np.uint8)
    both = transform([small, wide])
    alone = transform([small])
    hw = tuple(transform([wide])["pixel_values"].shape[-2:])
    # the processor pads the smaller image to the batch's size, and its mask says which pixels are real
    assert tuple(alone["pixel_values"].shape[-2:]) == (48, 48) and hw[1] > 48
    assert tuple(both["pixel_values"].shape[-2:]) == (max(48, hw[0]), max(48, hw[1]))
    assert int(both["pixel_mask"][0].sum()) == 48 * 48 and int(both["pixel_mask"][1].sum()) == hw[0] * hw[1]
    text = tokenizer(["what color is the shape ?"] * 2, return_tensors="pt")
    with torch.no_grad():
        out_both = encoder({**{k: v for k, v in text.items()}, **both})
        out_alone = encoder({**{k: v[:1] for k, v in text.items()}, **alone})
        out_wide = encoder({**{k: v[:1] for k, v in text.items()}, **transform([wide])})
    torch.testing.assert_close(out_both.pooled[:1], out_alone.pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out_both.pooled[1:], out_wide.pooled, atol=1e-5, rtol=1e-4)
    # sequence mask: text, then [CLS] + the real patches of each image (the small one's 3 x 3 of the wide one's)
    text_len = text["input_ids"].shape[1]
    wide_patches = (hw[0] // 16) * (hw[1] // 16)
    assert out_both.mask.shape[1] == text_len + 1 + max(9, wide_patches)
    assert int(out_both.mask[0, text_len:].sum()) == 1 + 3 * 3
    assert int(out_both.mask[1, text_len:].sum()) == 1 + wide_patches


def test_vilt_b32_and_its_peft_variants_train_from_a_local_checkpoint(checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main

    results = tmp_path / "runs"
    names = ["vilt-b32", "vilt-b32-lora", "vilt-b32-adapter", "vilt-b32-bitfit", "vilt-b32-prompt"]
    args = ["run", "--task", "vqa", "--results-dir", str(results), "--max-steps", "2", "--batch-size", "8",
            "--quiet", *TINY_DATA, "--set", f"baseline.pretrained={checkpoints['vilt']}"]
    for name in names:
        args += ["--baseline", name]
    assert main(args) == 0
    from transformers import ViltModel

    backbone = sum(p.numel() for p in ViltModel.from_pretrained(str(checkpoints["vilt"])).parameters())
    for name in names:
        record = _read(results, name)
        assert record["pretrained"] == {"source": str(checkpoints["vilt"]), "path": str(checkpoints["vilt"]),
                                        "identity": record["pretrained"]["identity"]}
        assert record["pretrained"]["identity"].startswith("sha256:")  # the weights by content (tests/test_identity.py)
        assert record["tokenizer"]["source"] == str(checkpoints["vilt"])
        assert record["tokenizer"]["vocab_size"] == 5 + len(WORDS)
        assert record["image_transform"].startswith("ViltImageProcessor")
        assert record["training"]["steps"] == 2 and 0 <= record["test"]["metrics"]["accuracy"] <= 100
        assert record["parameters"]["total"] >= backbone
        if name == "vilt-b32":
            assert record["peft"] is None and record["parameters"]["trainable"] == record["parameters"]["total"]
        else:
            assert record["peft"]["method"] == name.rsplit("-", 1)[1]
            assert record["parameters"]["trainable"] < backbone  # the pretrained backbone is (mostly) frozen
            assert (results / "vqa" / "shapes" / name / record["weights_file"]).is_file()


def test_bert_base_and_lora_train_from_a_local_checkpoint(checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main

    results = tmp_path / "runs"
    args = ["run", "--task", "vqa", "--baseline", "bert-base", "--baseline", "bert-base-lora", "--results-dir",
            str(results), "--max-steps", "2", "--batch-size", "8", "--quiet", *TINY_DATA,
            "--set", f"baseline.pretrained={checkpoints['bert']}"]
    assert main(args) == 0
    full, lora = _read(results, "bert-base"), _read(results, "bert-base-lora")
    for record in (full, lora):
        assert record["pretrained"]["path"] == str(checkpoints["bert"])
        assert record["tokenizer"]["source"] == str(checkpoints["bert"]) and record["image_transform"] is None
    from transformers import BertModel

    bert = sum(p.numel() for p in BertModel.from_pretrained(str(checkpoints["bert"])).parameters())
    lora_weights = 2 * 2 * 8 * (32 + 32)  # r=8 on query and value of 2 layers of width 32
    head = full["parameters"]["total"] - bert
    assert full["parameters"]["trainable"] == full["parameters"]["total"]
    assert lora["parameters"]["total"] == full["parameters"]["total"] + lora_weights
    assert lora["parameters"]["trainable"] == lora_weights + head


def test_coattention_pretrained_reads_bert_and_a_saved_resnet50(checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main
    from vlbench.models._torchvision import IMAGENET_MEAN, ImageNetResize
    from vlbench.models.base import BuildContext, build_model

    small = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 1, "grid_size": 2,
             "backbone": "resnet50", "backbone_weights": str(checkpoints["resnet"])}
    context = BuildContext("vqa", _tokenizer(), image_size=64, max_text_length=24)
    encoder = build_model("coattention", small, str(checkpoints["bert"]), context, "test")
    saved = torch.load(checkpoints["resnet"], weights_only=True)
    assert torch.equal(encoder.visual.backbone[0].weight, saved["conv1.weight"])  # conv1 of the trunk
    assert torch.equal(encoder.visual.backbone[4][0].bn1.running_var, saved["layer1.0.bn1.running_var"])
    transform = encoder.image_transform()
    assert isinstance(transform, ImageNetResize) and transform.channel_mean == IMAGENET_MEAN
    # one white pixel -> (1 - mean) / std per channel, the ImageNet normalisation
    white = transform.from_uint8(torch.full((1, 64, 64, 3), 255, dtype=torch.uint8))["pixel_values"]
    torch.testing.assert_close(white[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                                (1 - 0.406) / 0.225]))

    results = tmp_path / "runs"
    sets = [f"baseline.pretrained={checkpoints['bert']}"] + [f"baseline.config.{k}={v}" for k, v in small.items()]
    args = ["run", "--task", "vqa", "--baseline", "coattention-pretrained", "--results-dir", str(results),
            "--max-steps", "2", "--batch-size", "8", "--quiet", *TINY_DATA]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    record = _read(results, "coattention-pretrained")
    assert record["pretrained"]["path"] == str(checkpoints["bert"])
    assert record["config"]["baseline"]["config"]["backbone_weights"] == str(checkpoints["resnet"])
    assert record["image_transform"].startswith("square-64-imagenet")


def test_a_wrong_backbone_file_is_one_clear_line(checkpoints, tmp_path):
    from vlbench.errors import VLBenchError
    from vlbench.models._torchvision import resnet_trunk

    with pytest.raises(VLBenchError, match="does not exist"):
        resnet_trunk("resnet50", str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(VLBenchError, match="do not fit a torchvision resnet50"):
        resnet_trunk("resnet50", str(tmp_path / "other.pth"))


def test_pretrained_text_positions_and_vocabulary_are_checked(checkpoints):
    from vlbench.errors import SpecError
    from vlbench.models.base import BuildContext, build_model

    long_text = BuildContext("vqa", _tokenizer(), image_size=64, max_text_length=50)
    with pytest.raises(SpecError, match="40 text positions"):
        build_model("vilt", {}, str(checkpoints["vilt"]), long_text, "test")
    from transformers import BertTokenizer

    from vlbench.data.text import SPECIAL_TOKENS

    big = BertTokenizer(vocab={t: i for i, t in enumerate(SPECIAL_TOKENS + [f"w{i}" for i in range(100)])})
    with pytest.raises(SpecError, match="reads text with its own tokenizer"):
        build_model("bert-text", {}, str(checkpoints["bert"]), BuildContext("vqa", big, max_text_length=24), "test")


def test_all_baselines_on_the_embedded_data_leaves_the_full_size_specs_out(capsys):
    from vlbench.runner import select_baselines
    from vlbench.specs import load_task_spec

    messages = []
    chosen = {s.name for s in select_baselines(load_task_spec("vqa"), [], True, echo=messages.append)}
    full_size = {"bert-base", "bert-base-lora", "vilt-b32", "vilt-b32-lora", "vilt-b32-adapter", "vilt-b32-bitfit",
                 "vilt-b32-prompt", "coattention-pretrained"}
    assert not chosen & full_size and {"text-bert", "vilt", "prior"} <= chosen
    assert len(messages) == 1 and all(name in messages[0] for name in full_size)
    on_vqav2 = {s.name for s in select_baselines(load_task_spec("vqa"), [], True, dataset="vqav2:/data/vqav2")}
    assert full_size <= on_vqav2
    # named explicitly, a full-size baseline runs on any dataset
    assert [s.name for s in select_baselines(load_task_spec("vqa"), ["vilt-b32"], False)] == ["vilt-b32"]


def test_offline_hub_ids_that_are_not_cached_are_skipped_beside_others(monkeypatch):
    import huggingface_hub.constants

    from vlbench.models.pretrained import missing_requirement

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    message = missing_requirement("some-org/never-downloaded-model")
    assert message and "HF_HUB_OFFLINE" in message and "--local-dir" in message and len(message.splitlines()) == 1
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert missing_requirement("some-org/never-downloaded-model") is None


def test_vilt_b32_retrieval_scores_every_pair_through_its_processor(checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main

    results = tmp_path / "runs"
    args = ["run", "--task", "retrieval", "--baseline", "vilt-b32", "--results-dir", str(results), "--max-steps", "2",
            "--batch-size", "8", "--quiet", "--set", "task.data.train_images=24", "--set", "task.data.val_images=4",
            "--set", "task.data.test_images=6", "--set", f"baseline.pretrained={checkpoints['vilt']}",
            "--set", "task.options.max_text_length=40"]  # the checkpoint has 40 text positions
    assert main(args) == 0
    record = json.loads((results / "retrieval" / "shapes" / "vilt-b32" / "seed-0.json").read_text())
    assert record["image_transform"].startswith("ViltImageProcessor")
    assert record["test"]["metrics"]["pairs_scored"] == 6 * 30  # every (image, caption) pair of 6 images x 5 captions
