"""VQA task type and the ViLT encoder: soft targets, answer strings, the batched patch path, modalities."""

from __future__ import annotations

import pytest
import torch

from vlbench.data.text import build_word_vocab, word_level_tokenizer
from vlbench.metrics.vqa import vqa_evaluate
from vlbench.models.base import BuildContext
from vlbench.models.vilt import ViltConfigSpec, ViltEncoder
from vlbench.tasks.vqa import soft_score


@pytest.mark.parametrize("count", range(0, 11))
def test_soft_score_equals_the_official_accuracy(count):
    answers = ["cat"] * count + [f"other{i}" for i in range(10 - count)]
    ann = [{"question_id": 1, "question_type": "what", "answer_type": "other",
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]}]
    official = vqa_evaluate({1: "cat"}, ann)["per_question"][1]
    assert soft_score(count) == pytest.approx(official)


def _tiny_vilt(patch_embedding: str = "linear", pooling: str = "cls") -> ViltEncoder:
    vocab = build_word_vocab(["what color is the circle ?", "how many red objects are there ?"])
    context = BuildContext("vqa", word_level_tokenizer(vocab), image_size=32, max_text_length=12)
    config = ViltConfigSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, patch_size=8,
                            patch_embedding=patch_embedding, pooling=pooling)
    return ViltEncoder.from_spec(config, None, context)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(5, 12, (3, 7), generator=g),
        "attention_mask": torch.ones(3, 7, dtype=torch.long),
        "token_type_ids": torch.zeros(3, 7, dtype=torch.long),
        "pixel_values": torch.randn(3, 3, 32, 32, generator=g),
    }


@pytest.mark.parametrize("patch_embedding", ["linear", "conv"])
def test_batched_patch_path_equals_transformers_own_path(patch_embedding):
    torch.manual_seed(0)
    encoder = _tiny_vilt(patch_embedding).eval()
    batch = _batch()
    with torch.no_grad():
        fast = encoder(batch).pooled
        # transformers' visual_embed: per-example interpolation and patch sampling
        slow = encoder.vilt(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"], pixel_values=batch["pixel_values"]).pooler_output
    assert torch.allclose(fast, slow, atol=1e-5)


def test_mean_pooling_averages_every_real_token_and_ignores_padding():
    torch.manual_seed(0)
    encoder = _tiny_vilt(pooling="mean").eval()
    batch = _batch()
    padded = dict(batch, input_ids=torch.cat([batch["input_ids"], torch.zeros(3, 4, dtype=torch.long)], 1),
                  attention_mask=torch.cat([batch["attention_mask"], torch.zeros(3, 4, dtype=torch.long)], 1),
                  token_type_ids=torch.zeros(3, 11, dtype=torch.long))
    with torch.no_grad():
        out = encoder(batch)
        by_hand = torch.tanh(encoder.vilt.pooler.dense(out.sequence.mean(1)))  # no padding: a plain mean
        cls_pooled = encoder.vilt(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  token_type_ids=batch["token_type_ids"], pixel_values=batch["pixel_values"]).pooler_output
        assert torch.allclose(out.pooled, by_hand, atol=1e-6)
        assert not torch.allclose(out.pooled, cls_pooled, atol=1e-3)
        assert torch.allclose(encoder(padded).pooled, out.pooled, atol=1e-5)


def test_conv_stem_is_refused_with_pretrained_weights_before_anything_loads(tmp_path):
    from vlbench.errors import SpecError

    context = BuildContext("vqa", None, image_size=32, max_text_length=12)
    config = ViltConfigSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, patch_size=8,
                            patch_embedding="conv")
    with pytest.raises(SpecError, match="patch_embedding=linear"):
        ViltEncoder.from_spec(config, str(tmp_path / "no-such-model"), context)


def test_position_embeddings_are_initialised_like_vilt():
    torch.manual_seed(0)
    encoder = _tiny_vilt()
    assert encoder.vilt.embeddings.position_embeddings.std() > 0.005
    assert encoder.vilt.embeddings.cls_token.abs().sum() > 0


def test_vilt_reads_the_image():
    torch.manual_seed(0)
    encoder = _tiny_vilt().eval()
    batch = _batch()
    other = dict(batch, pixel_values=torch.randn(3, 3, 32, 32))
    with torch.no_grad():
        assert not torch.allclose(encoder(batch).pooled, encoder(other).pooled)


def test_text_only_batches_carry_no_pixels_and_answers_keep_raw_spelling(cache_dir):
    from vlbench.data.shapes import build_shapes
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    dataset = build_shapes(None, {"train_images": 30, "val_images": 8, "test_images": 8}, cache_dir, quiet=True)
    task = VQATask(load_task_spec("vqa"), dataset)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    text_batch = task.collate("train", [0, 1, 2], ("text",))
    joint_batch = task.collate("train", [0, 1, 2], ("text", "image"))
    assert "pixel_values" not in text_batch and joint_batch["pixel_values"].shape == (3, 3, 64, 64)
    assert torch.equal(text_batch["targets"], joint_batch["targets"])
    # every class predicts a spelling that humans used, so unanimous raw answers still match
    raw = {" ".join(a.split()) for answers in dataset.split("vqa", "train")["answers"] for a in answers}
    assert set(task.answers) <= raw
    # soft targets: the plurality answer of each question scores highest
    first = dataset.split("vqa", "train")[0]
    best = task.answers[int(joint_batch["targets"][0].argmax())]
    from vlbench.metrics.vqa import normalize_answer

    assert normalize_answer(best) == normalize_answer(first["multiple_choice_answer"])
