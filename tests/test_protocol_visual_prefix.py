"""The offline Frozen-style checkpoint: its texts, its frozen language model, and prompting it through vlbench run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.protocols.visual_prefix import _caption_labels, language_corpus, split_words
from vlbench.specs import PromptTemplate

TEMPLATE = PromptTemplate(instruction="Answer briefly.", example="Question: {question} Answer: {answer}",
                          query="Question: {question} Answer:")


def test_texts_put_a_caption_where_the_image_goes_and_end_every_answer():
    questions = [{"image_id": i, "question": f"What color is the circle {i}?", "multiple_choice_answer": c}
                 for i, c in enumerate(["red", "blue", "green", "red"])]
    captions = {i: [f"A {c} circle."] for i, c in enumerate(["red", "blue", "green", "red"])}
    texts = language_corpus(questions, captions, TEMPLATE, max_shots=2, rng=np.random.default_rng(0), eos="</s>")
    assert len(texts) == 4
    for index, text in enumerate(texts):
        assert text.startswith("Answer briefly. ")
        # the question itself comes last, after its own image's caption, answered and ended
        assert text.endswith(f"A {questions[index]['multiple_choice_answer']} circle. Question: What color is the "
                             f"circle {index}? Answer: {questions[index]['multiple_choice_answer']} </s>")
        shots = text.count("</s>") - 1
        assert 0 <= shots <= 2 and text.count("Question:") == shots + 1
    assert split_words("A red circle, left? Answer: 2") == ["A", "red", "circle", ",", "left", "?", "Answer:", "2"]


def test_caption_labels_cover_only_the_caption_and_end_mark():
    ids = torch.tensor([[5, 4, 4, 7, 8, 3, 0], [5, 4, 4, 7, 3, 0, 0]])
    mask = (ids != 0).long()
    labels = _caption_labels(ids, mask, image_token=4, caption_lengths=[3, 2])
    assert labels.tolist() == [[-100, -100, -100, 7, 8, 3, -100], [-100, -100, -100, 7, 3, -100, -100]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("visual-prefix")
    code = main(["visual-prefix", "--out", str(out), "--lm-epochs", "1", "--prefix-epochs", "1", "--max-shots", "1",
                 *TINY_DATA])
    assert code == 0
    return out


def test_the_checkpoint_loads_as_an_image_text_to_text_model_with_its_language_model_frozen(built):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    info = json.loads((built / "vlbench-visual-prefix.json").read_text())
    assert info["images"] == 48 and info["settings"]["lm_epochs"] == 1
    model = AutoModelForImageTextToText.from_pretrained(built)
    processor = AutoProcessor.from_pretrained(built)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    # 64 px shapes images, 16 px patches: 16 prefix tokens stand for one image
    enc = processor(text=["Question: <image> what"], images=[np.zeros((64, 64, 3), dtype=np.uint8)], return_tensors="pt")
    assert int((enc["input_ids"] == model.config.image_token_index).sum()) == 16
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id


def test_stage_two_leaves_the_language_model_as_stage_one_trained_it(tmp_path):
    from vlbench.protocols import visual_prefix
    from vlbench.runner import load_dataset

    data = load_dataset("shapes", {"train_images": 16, "val_images": 4, "test_images": 4}, tmp_path / "cache", quiet=True)
    seen = {}
    original = visual_prefix._train_prefix

    def spy(model, *args, **kwargs):
        seen["before"] = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
        seen["vision_before"] = model.model.multi_modal_projector.linear_1.weight.clone()
        original(model, *args, **kwargs)
        seen["after"] = model.model.language_model.state_dict()
        seen["vision_after"] = model.model.multi_modal_projector.linear_1.weight

    visual_prefix._train_prefix = spy
    try:
        settings = visual_prefix.PrefixSettings(lm_hidden=32, lm_layers=1, vision_hidden=32, vision_layers=1,
                                                lm_epochs=1, prefix_epochs=1, batch_size=16)
        visual_prefix.build_visual_prefix_model(data, TEMPLATE, tmp_path / "out", settings, say=lambda _: None)
    finally:
        visual_prefix._train_prefix = original
    for name, value in seen["before"].items():
        assert torch.equal(value, seen["after"][name]), name
    assert not torch.equal(seen["vision_before"], seen["vision_after"])  # the prefix did train


def test_prompting_the_built_checkpoint_through_vlbench_run(built, tmp_path):
    spec = tmp_path / "prompted-prefix.yaml"
    spec.write_text(f"model: prompted\npretrained: {built}\ntasks: [vqa]\nfamily: prompted\n"
                    "config: {shots: 2, max_new_tokens: 3, batch_size: 8, use_chat_template: false}\n")
    results = tmp_path / "runs"
    assert main(["run", "--task", "vqa", "--baseline", str(spec), "--results-dir", str(results), "--quiet",
                 *TINY_DATA]) == 0
    record = json.loads((results / "vqa" / "shapes" / "prompted-prefix" / "seed-0.json").read_text())
    assert record["status"] == "ok" and 0.0 <= record["test"]["metrics"]["accuracy"] <= 100.0
    predictions = json.loads((results / "vqa" / "shapes" / "prompted-prefix" / record["predictions_file"]).read_text())
    assert len(predictions) == record["data"]["sizes"]["test"]
    assert all("</s>" not in p["answer"] and "<image>" not in p["answer"] for p in predictions)


def test_a_task_without_a_prompt_is_one_error_line(tmp_path, capsys):
    task = tmp_path / "vqa-no-prompt.yaml"
    task.write_text("type: vqa\ndataset: shapes\nprimary_metric: accuracy\n")
    assert main(["visual-prefix", "--out", str(tmp_path / "o"), "--task", str(task)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "prompt" in err[0]
    (tmp_path / "a-file").write_text("x")
    assert main(["visual-prefix", "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out") and "not a folder" in err[0]


def test_train_images_and_threads_options_take_effect(tmp_path):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "small"
    try:
        assert main(["visual-prefix", "--out", str(out), "--lm-epochs", "1", "--prefix-epochs", "1",
                     "--train-images", "8", "--threads", "1", *TINY_DATA]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    info = json.loads((out / "vlbench-visual-prefix.json").read_text())
    assert info["images"] == 8 and info["captions"] == 40 and info["settings"]["train_images"] == 8
