"""Prompted baselines on a tiny random LLaVA saved by the test: prompts, example draws, batching, answers."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from tests.prompted_fixtures import save_tiny_llava
from vlbench.cli.main import main
from vlbench.errors import SpecError, VLBenchError
from vlbench.models.prompted import PromptedConfig, PromptedVLM, draw_examples, extract_answer, fill, template_cues
from vlbench.specs import PromptTemplate

TEMPLATE = PromptTemplate(instruction="Answer briefly.", example="Question: {question} Answer: {answer}",
                          query="Question: {question} Answer:")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


class _Store:
    """Images by id: a solid grey level per id, so prompts can be traced to the rows they came from."""

    def get(self, ids):
        import torch

        return torch.stack([torch.full((64, 64, 3), (7 * int(i)) % 256, dtype=torch.uint8) for i in ids])


def _model(checkpoint, **config):
    model = PromptedVLM(PromptedConfig(**config), str(checkpoint), seed=0)
    model.images, model.template, model.task_name = _Store(), TEMPLATE, "vqa"
    return model


TRAIN = [{"question": f"what color is the circle {i}", "multiple_choice_answer": ["red", "blue", "green"][i % 3],
          "image_id": 100 + i} for i in range(10)]
QUERIES = [{"question": "how many squares", "image_id": 5 + i} for i in range(5)]


def test_templates_answers_and_draws():
    assert fill("Q: {question} A: {answer}", {"question": "is it red", "answer": "yes", "x": 1}, "t") == "Q: is it red A: yes"
    with pytest.raises(SpecError, match="answr"):
        fill("{answr}", {"answer": "yes"}, "t")
    assert extract_answer("  red\nQuestion: what", ("Question:",)) == "red"
    assert extract_answer("blue Question: how many", ("Question:",)) == "blue"
    # the run-on answers prompted-smollm wrote at k = 4 (docs/pretrained.md), cut at any cue of the template
    cues = template_cues("Question: {question} Answer: {answer}")
    assert cues == ("Question:", "Answer:")
    assert [extract_answer(g, cues) for g in ("yes answer", "red Answer: blue", "no. question 2", "Answer: 3")] == \
        ["yes", "red", "no.", "3"]
    assert extract_answer("answers", cues) == "answers" and extract_answer("reanswer", cues) == "reanswer"
    assert extract_answer("\n\n 2 \n3") == "2"
    first = draw_examples(10, 4, seed=3, query_index=7)
    assert first == draw_examples(10, 4, seed=3, query_index=7) and len(set(first)) == 4
    assert first != draw_examples(10, 4, seed=4, query_index=7)
    assert draw_examples(10, 0, 0, 0) == []
    with pytest.raises(VLBenchError):
        draw_examples(3, 4, 0, 0)


def test_prompt_shows_k_examples_with_their_answers_then_the_query(checkpoint):
    model = _model(checkpoint, shots=2)
    model.fit(TRAIN)
    content, image_ids = model.build_prompt(QUERIES[0], 0)
    chosen = draw_examples(len(TRAIN), 2, 0, 0)
    assert image_ids == [TRAIN[i]["image_id"] for i in chosen] + [QUERIES[0]["image_id"]]
    texts = [c["text"] for c in content if c["type"] == "text"]
    assert texts[0] == "Answer briefly."
    assert texts[1:3] == [f"Question: {TRAIN[i]['question']} Answer: {TRAIN[i]['multiple_choice_answer']}" for i in chosen]
    assert texts[-1] == "Question: how many squares Answer:"
    assert [c["type"] for c in content].count("image") == 3
    text = model._text(content)
    assert text.startswith("user : Answer briefly. <image> ") and text.endswith("assistant : ")
    zero = _model(checkpoint, shots=0, use_chat_template=False)
    zero.fit(TRAIN)
    content, image_ids = zero.build_prompt(QUERIES[1], 1)
    assert image_ids == [QUERIES[1]["image_id"]] and zero._text(content) == "Answer briefly. <image> Question: how many squares Answer:"


def test_batching_changes_neither_prompts_nor_answers(checkpoint):
    one = _model(checkpoint, shots=1, batch_size=1, max_new_tokens=3)
    many = _model(checkpoint, shots=1, batch_size=4, max_new_tokens=3)
    for model in (one, many):
        model.fit(TRAIN)
    answers_one, answers_many = one.predict(QUERIES), many.predict(QUERIES)
    assert one.last_prompts == many.last_prompts and len(answers_one) == len(QUERIES)
    assert answers_one == answers_many
    assert all(isinstance(a, str) and "\n" not in a for a in answers_one)


def test_prompted_baseline_runs_through_vlbench_run(checkpoint, tmp_path):
    spec = tmp_path / "prompted-tiny.yaml"
    spec.write_text(f"model: prompted\npretrained: {checkpoint}\ntasks: [vqa]\nfamily: prompted\n"
                    "config: {shots: 1, max_new_tokens: 2, batch_size: 16}\n")
    results = tmp_path / "runs"
    assert main(["run", "--task", "vqa", "--baseline", str(spec), "--results-dir", str(results), "--quiet", *TINY_DATA]) == 0
    record = json.loads((results / "vqa" / "shapes" / "prompted-tiny" / "seed-0.json").read_text())
    assert record["parameters"]["trainable"] == 0 and record["config"]["baseline"]["config"]["shots"] == 1
    assert 0.0 <= record["test"]["metrics"]["accuracy"] <= 100.0
    predictions = json.loads((results / "vqa" / "shapes" / "prompted-tiny" / record["predictions_file"]).read_text())
    assert len(predictions) == record["data"]["sizes"]["test"] and all(isinstance(p["answer"], str) for p in predictions)
    assert record["config"]["task"]["prompt"]["query"] == "Question: {question} Answer:"


def test_prompted_baseline_captions_through_vlbench_run(checkpoint, tmp_path):
    spec = tmp_path / "prompted-captioner.yaml"
    spec.write_text(f"model: prompted\npretrained: {checkpoint}\ntasks: [captioning]\nfamily: prompted\n"
                    "config: {shots: 2, max_new_tokens: 4, batch_size: 16}\n")
    results = tmp_path / "runs"
    assert main(["run", "--task", "captioning", "--baseline", str(spec), "--results-dir", str(results), "--quiet",
                 *TINY_DATA]) == 0
    folder = results / "captioning" / "shapes" / "prompted-captioner"
    record = json.loads((folder / "seed-0.json").read_text())
    assert record["status"] == "ok" and record["parameters"]["trainable"] == 0
    assert record["config"]["task"]["prompt"]["query"] == "Caption:" and "CIDEr" in record["test"]["metrics"]
    predictions = json.loads((folder / record["predictions_file"]).read_text())
    assert len(predictions) == 12 and all(isinstance(p["caption"], str) for p in predictions)  # one per test image
    # the examples of a caption prompt are (image, reference caption) pairs of the training split
    model = _model(checkpoint, shots=2)
    model.template = PromptTemplate(instruction="Describe.", example="Caption: {caption}", query="Caption:")
    model.fit([{"image_id": 100 + i, "caption": f"a red circle {i}"} for i in range(5)])
    content, image_ids = model.build_prompt({"image_id": 7}, 0)
    texts = [part["text"] for part in content if part["type"] == "text"]
    assert texts[0] == "Describe." and texts[-1] == "Caption:" and len(image_ids) == 3 and image_ids[-1] == 7
    assert all(t.startswith("Caption: a red circle ") for t in texts[1:-1])


def test_prompted_without_pretrained_is_one_error_line(tmp_path, capsys):
    spec = tmp_path / "prompted-none.yaml"
    spec.write_text("model: prompted\ntasks: [vqa]\n")
    assert main(["run", "--task", "vqa", "--baseline", str(spec), "--results-dir", str(tmp_path / "r"), "--quiet",
                 *TINY_DATA]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "needs `pretrained:`" in err[0]
    record = json.loads((tmp_path / "r" / "vqa" / "shapes" / "prompted-none" / "seed-0.json").read_text())
    assert record["status"] == "failed" and "needs `pretrained:`" in record["failure"]["reason"]
