"""Retrieval end to end: a few-step CLI run of every baseline, files that `vlbench score` re-scores to the same
numbers, two-stage = full cross-encoder ranking on a real model when k covers everything, and a text-only
counterpart that really receives no image information."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

TINY_MODEL = [
    "--set", "baseline.config.hidden_size=16", "--set", "baseline.config.text_layers=1",
    "--set", "baseline.config.image_layers=1", "--set", "baseline.config.num_heads=2",
    "--set", "baseline.config.intermediate_size=32", "--set", "task.options.embed_dim=8",
    "--set", "task.options.max_text_length=40",
]
BASELINES = ("retrieval-chance", "retrieval-text-only", "retrieval-dual", "retrieval-cross", "retrieval-two-stage")
N_IMAGES, N_TEXTS = 12, 60  # TINY_DATA's 12 test images, 5 captions each


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    code = main(["run", "--task", "retrieval", "--all-baselines", "--results-dir", str(results), "--max-steps", "2",
                 "--quiet", *TINY_DATA, *TINY_MODEL, "--set", "baseline.config.top_k=2"])
    assert code == 0
    return results


def _record(results, baseline):
    folder = results / "retrieval" / "shapes" / baseline
    return folder, json.loads((folder / "seed-0.json").read_text())


@pytest.mark.parametrize("baseline", BASELINES)
def test_run_writes_a_similarity_matrix_that_score_reproduces(finished_run, baseline, capsys) -> None:
    folder, record = _record(finished_run, baseline)
    assert record["primary_metric"] == "rsum"
    metrics = record["test"]["metrics"]
    for key in ("rsum", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "pairs_scored"):
        assert key in metrics, key
    assert record["data"]["sizes"]["test"] == N_TEXTS
    details = record["test"]["details"]
    assert details["num_images"] == N_IMAGES and details["num_texts"] == N_TEXTS
    assert details["chance"]["t2i_R@1"] == pytest.approx(100 / N_IMAGES)
    predictions = folder / record["predictions_file"]
    assert predictions.name == "seed-0.predictions.npy"
    matrix = np.load(predictions)
    assert matrix.shape == (N_IMAGES, N_TEXTS) and matrix.dtype == np.float64
    references = folder / "seed-0.predictions.references.json"
    refs = json.loads(references.read_text())
    assert len(refs["text_to_image"]) == N_TEXTS and len(refs["image_ids"]) == N_IMAGES
    per_example = record["per_example"]["test"]
    assert len(per_example) == N_IMAGES + N_TEXTS
    assert {f"t2i/{c}" for c in refs["caption_ids"]} <= set(per_example)
    capsys.readouterr()
    assert main(["score", "--task", "retrieval", "-p", str(predictions), "-r", str(references), "--format", "json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    for key in ("rsum", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_medr", "t2i_medr"):
        assert rescored[key] == pytest.approx(metrics[key], abs=1e-12), key


def test_pairs_scored_follow_the_scoring(finished_run) -> None:
    pairs = {b: _record(finished_run, b)[1]["test"]["metrics"]["pairs_scored"] for b in BASELINES}
    assert pairs["retrieval-chance"] == pairs["retrieval-text-only"] == pairs["retrieval-dual"] == 0
    assert pairs["retrieval-cross"] == N_IMAGES * N_TEXTS
    # top_k=2: each image's 2 best texts and each text's 2 best images, at most 2 * (12 + 60) pairs
    assert N_TEXTS * 2 <= pairs["retrieval-two-stage"] <= 2 * (N_IMAGES + N_TEXTS)
    _, record = _record(finished_run, "retrieval-two-stage")
    assert record["test"]["details"]["scoring"] == "two-stage" and record["test"]["details"]["top_k"] == 2


def test_table_compares_with_the_text_only_counterpart(finished_run, capsys) -> None:
    capsys.readouterr()
    assert main(["table", str(finished_run), "--format", "json"]) == 0
    rows = {(r["baseline"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    dual, blind = rows[("retrieval-dual", "rsum")], rows[("retrieval-text-only", "rsum")]
    assert dual["primary"] and blind["delta_vs_reference"] is None
    assert dual["delta_vs_reference"] == pytest.approx(dual["mean"] - blind["mean"])
    assert ("retrieval-chance", "pairs_scored") in rows


# --------------------------------------------------------------------------------------------------
# the task driven directly, on the same tiny data
# --------------------------------------------------------------------------------------------------
SMALL_CONFIG = {"hidden_size": 16, "text_layers": 1, "image_layers": 1, "num_heads": 2, "intermediate_size": 32,
                "dropout": 0.0, "attention_dropout": 0.0}


def _task(cache_dir):
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.retrieval import RetrievalTask

    dataset = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache_dir, quiet=True)
    spec = load_task_spec("retrieval")
    task = RetrievalTask(spec.model_copy(update={"options": dict(spec.options, embed_dim=8, max_text_length=40)}), dataset)
    tokenizer = word_level_tokenizer(build_word_vocab(task.training_texts()))
    task.prepare(tokenizer)
    return dataset, task, tokenizer


def _model(task, tokenizer, name, **extra):
    from vlbench.models.base import BuildContext, build_model
    from vlbench.registry import MODELS

    torch.manual_seed(0)
    context = BuildContext("retrieval", tokenizer, 64, 40, task.build_context_extras())
    config = dict(SMALL_CONFIG, **extra)
    if name in ("vilt", "bert-text"):
        config = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "dropout": 0.0,
                  "attention_dropout": 0.0}
    model = task.wrap(build_model(name, config, None, context, name)).eval()
    return model, tuple(MODELS.get(name).modalities)


def test_text_only_counterpart_receives_no_image_information(cache_dir) -> None:
    from vlbench.data.base import ArrayImageStore

    dataset, task, tokenizer = _task(cache_dir)
    models = {name: _model(task, tokenizer, name) for name in ("dual-encoder-blind", "dual-encoder")}

    def outputs(name):
        model, modalities = models[name]
        batch = task.collate("train", list(range(8)), modalities)
        with torch.no_grad():
            out = model(batch)
        sim, _ = task.similarity(model, "test", 16, modalities, torch.device("cpu"))
        return batch, out["image_emb"], sim

    before = {name: outputs(name) for name in models}
    ids = dataset.images.ids()
    noise = torch.randint(0, 256, (len(ids), 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    dataset.images = ArrayImageStore(noise, ids)
    after = {name: outputs(name) for name in models}

    blind_batch, blind_images, blind_sim = before["dual-encoder-blind"]
    assert "pixel_values" not in blind_batch
    assert torch.equal(blind_images, after["dual-encoder-blind"][1])
    np.testing.assert_array_equal(blind_sim, after["dual-encoder-blind"][2])
    # even handed pixels, the blind tower does not read them
    model, _ = models["dual-encoder-blind"]
    with_pixels = task.collate("train", list(range(8)), ("text", "image"))
    with torch.no_grad():
        assert torch.equal(model(with_pixels)["image_emb"], blind_images)
    # the same check has power: the dual encoder's outputs move with the pixels
    assert "pixel_values" in before["dual-encoder"][0]
    assert not torch.allclose(before["dual-encoder"][1], after["dual-encoder"][1])
    assert not np.array_equal(before["dual-encoder"][2], after["dual-encoder"][2])


def test_two_stage_equals_full_cross_on_a_real_model_when_k_covers_all(cache_dir) -> None:
    from vlbench.metrics.retrieval import retrieval_ranks

    _, task, tokenizer = _task(cache_dir)
    model, modalities = _model(task, tokenizer, "dual-itm", fusion_layers=1)
    cpu = torch.device("cpu")
    full, full_pairs = task.similarity(model, "test", 16, modalities, cpu, scoring="cross")
    model.top_k = N_TEXTS
    staged, staged_pairs = task.similarity(model, "test", 16, modalities, cpu, scoring="two-stage")
    assert full_pairs == staged_pairs == N_IMAGES * N_TEXTS
    np.testing.assert_allclose(staged, full, rtol=0, atol=1e-5)
    text_to_image = task._data["test"].text_image
    for a, b in zip(retrieval_ranks(staged, text_to_image), retrieval_ranks(full, text_to_image)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.argsort(-staged, axis=1, kind="stable"), np.argsort(-full, axis=1, kind="stable"))
    # a small k: each image's candidates (its 2 best texts, and the texts that rank it among their 2 best images)
    # carry the cross-encoder's scores (shifted by one offset) above the rest, which keep their dual scores
    model.top_k = 2
    partial, partial_pairs = task.similarity(model, "test", 16, modalities, cpu, scoring="two-stage")
    dual, dual_pairs = task.similarity(model, "test", 16, modalities, cpu, scoring="dual")
    assert dual_pairs == 0
    candidates = [set(np.argsort(-dual[i], kind="stable")[:2]) for i in range(N_IMAGES)]
    for t in range(N_TEXTS):
        for i in np.argsort(-dual[:, t], kind="stable")[:2]:
            candidates[i].add(t)
    assert partial_pairs == sum(len(c) for c in candidates) < N_IMAGES * N_TEXTS
    offsets = []
    for i, chosen in enumerate(candidates):
        mine, rest = sorted(chosen), [t for t in range(N_TEXTS) if t not in chosen]
        offsets.extend(partial[i, mine] - full[i, mine])
        np.testing.assert_array_equal(partial[i, rest], dual[i, rest])
        if rest:  # an untrained model can make one image every text's favourite
            assert partial[i, mine].min() > partial[i, rest].max()
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-4)


def test_a_joint_model_like_vilt_trains_as_a_cross_encoder(cache_dir) -> None:
    _, task, tokenizer = _task(cache_dir)
    model, modalities = _model(task, tokenizer, "vilt")
    model.train()
    batch = task.collate("train", list(range(10)), modalities)
    out = model(batch)
    assert out["itm_logits"].shape == (20, 2) and out["itm_labels"].sum().item() == 10
    loss = task.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.itm_head.weight.grad is not None
    result = task.evaluate(model, "test", 16, modalities, torch.device("cpu"))
    assert result.metrics["pairs_scored"] == N_IMAGES * N_TEXTS and result.details["scoring"] == "cross"


def test_text_only_encoder_is_refused(cache_dir) -> None:
    from vlbench.errors import SpecError

    _, task, tokenizer = _task(cache_dir)
    with pytest.raises(SpecError, match="retrieval needs"):
        _model(task, tokenizer, "bert-text")


def test_table_with_one_row_per_image_and_a_list_of_captions() -> None:
    from datasets import Dataset, DatasetDict

    from vlbench.data.base import ArrayImageStore, VLDataset
    from vlbench.specs import load_task_spec
    from vlbench.tasks.retrieval import RetrievalTask

    table = Dataset.from_dict({"image_id": [7, 3], "captions": [["a b", "c d", "e"], ["f"]]})
    images = ArrayImageStore(np.zeros((2, 64, 64, 3), dtype=np.uint8), [7, 3])
    dataset = VLDataset("toy", "x", images, {"pairs": DatasetDict({"train": table, "val": table, "test": table})})
    spec = load_task_spec("retrieval")
    task = RetrievalTask(spec.model_copy(update={"options": dict(spec.options, table="pairs")}), dataset)
    data = task._data["test"]
    assert data.texts == ["a b", "c d", "e", "f"] and data.text_image == [0, 0, 0, 1] and data.image_ids == [7, 3]
