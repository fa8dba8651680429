"""Captioning end to end: the captions table, a few-step CLI run of every baseline, files that `vlbench score`
re-scores to the same numbers, and a blind captioner that really sees no image."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.data.shapes.captions import CAPTIONS_PER_IMAGE, caption_scene, to_coco_captions
from vlbench.data.shapes.world import COLORS, SHAPES, sample_scenes

SMALL = [
    *TINY_DATA,
    "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
    "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64",
    "--set", "task.options.decoder.num_layers=1", "--set", "task.options.decoder.intermediate_size=64",
    "--set", "task.options.max_target_length=16", "--set", "task.options.beam_size=2",
]
METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def test_captions_vary_and_follow_the_scene() -> None:
    scenes = sample_scenes(np.random.default_rng(0), 200)
    rng = np.random.default_rng(1)
    distinct = set()
    for scene in scenes:
        captions = caption_scene(scene, rng)
        assert len(captions) == CAPTIONS_PER_IMAGE == len(set(captions))
        distinct.update(captions)
        words = {w for c in captions for w in re.findall(r"[a-z]+", c.lower())}
        # every colour in the image is named by some caption, and nothing absent is named
        assert {o.color for o in scene.objects} <= words
        assert not (set(COLORS) - {o.color for o in scene.objects}) & words
        assert not (set(SHAPES) - {o.shape for o in scene.objects}) & {w.rstrip("s") for w in words}
    assert len(distinct) > 4 * len(scenes)


def test_coco_export_shape() -> None:
    from datasets import Dataset

    table = Dataset.from_dict({"caption_id": [70, 71, 30], "image_id": [7, 7, 3], "caption": ["a b", "c", "d"]})
    coco = to_coco_captions(table)
    assert [i["id"] for i in coco["images"]] == [7, 3]
    assert coco["annotations"][2] == {"image_id": 3, "id": 30, "caption": "d"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    code = main(["run", "--task", "captioning", "--all-baselines", "--results-dir", str(results),
                 "--max-steps", "3", "--quiet", *SMALL])
    assert code == 0
    return results


@pytest.mark.parametrize("baseline", ["captioner-blind", "captioner-vilt"])
def test_run_writes_coco_results_that_score_reproduces(finished_run, baseline, capsys) -> None:
    folder = finished_run / "captioning" / "shapes" / baseline
    record = json.loads((folder / "seed-0.json").read_text())
    assert record["primary_metric"] == "CIDEr" and record["training"]["steps"] == 3
    metrics = record["test"]["metrics"]
    assert set(METRICS) <= set(metrics)
    assert record["test"]["details"]["decoding"]["beam_size"] == 2
    predictions_file = folder / record["predictions_file"]
    predictions = json.loads(predictions_file.read_text())
    n_test = record["data"]["sizes"]["test"]
    assert n_test == 12 and len(predictions) == n_test
    assert all(set(p) == {"image_id", "caption"} and isinstance(p["caption"], str) for p in predictions)
    assert sorted(record["per_example"]["test"]) == sorted(str(p["image_id"]) for p in predictions)
    references = folder / "seed-0.predictions.references.json"
    coco = json.loads(references.read_text())
    assert len(coco["images"]) == n_test and len(coco["annotations"]) == CAPTIONS_PER_IMAGE * n_test
    capsys.readouterr()
    assert main(["score", "--task", "captioning", "-p", str(predictions_file), "-r", str(references),
                 "--format", "json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    for name in METRICS:
        assert rescored[name] == pytest.approx(metrics[name], abs=1e-12), name


def test_table_compares_with_the_blind_captioner(finished_run, capsys) -> None:
    capsys.readouterr()
    assert main(["table", str(finished_run), "--format", "json"]) == 0
    rows = {(r["baseline"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    vilt, blind = rows[("captioner-vilt", "CIDEr")], rows[("captioner-blind", "CIDEr")]
    assert vilt["primary"] and blind["delta_vs_reference"] is None
    assert vilt["delta_vs_reference"] == pytest.approx(vilt["mean"] - blind["mean"])


def _task_and_models(cache_dir):
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.models.base import BuildContext, build_model
    from vlbench.registry import MODELS
    from vlbench.specs import load_task_spec
    from vlbench.tasks.captioning import CaptioningTask

    dataset = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache_dir, quiet=True)
    spec = load_task_spec("captioning")
    options = dict(spec.options, max_target_length=10, beam_size=2,
                   decoder={"num_layers": 1, "num_heads": 2, "intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0})
    task = CaptioningTask(spec.model_copy(update={"options": options}), dataset)
    tokenizer = word_level_tokenizer(build_word_vocab(task.training_texts()))
    task.prepare(tokenizer)
    context = BuildContext("captioning", tokenizer, 64, 8, task.build_context_extras())
    models = {}
    for name, config in (("blind", {"hidden_size": 32}),
                         ("vilt", {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                                   "dropout": 0.0, "attention_dropout": 0.0})):
        torch.manual_seed(0)
        models[name] = (task.wrap(build_model(name, config, None, context, name)).eval(), MODELS.get(name).modalities)
    return dataset, task, models


def test_blind_captioner_receives_no_image_information(cache_dir) -> None:
    from vlbench.data.base import ArrayImageStore

    dataset, task, models = _task_and_models(cache_dir)
    indices = list(range(6))

    def outputs(name):
        model, modalities = models[name]
        batch = task.collate("train", indices, modalities)
        with torch.no_grad():
            logits = model(batch)
        return batch, logits, task.predict(model, "test", 64, modalities, torch.device("cpu"))

    before = {name: outputs(name) for name in models}
    ids = dataset.images.ids()
    noise = torch.randint(0, 256, (len(ids), 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    dataset.images = ArrayImageStore(noise, ids)
    after = {name: outputs(name) for name in models}

    blind_batch, blind_logits, blind_predictions = before["blind"]
    assert "pixel_values" not in blind_batch
    assert torch.equal(blind_logits, after["blind"][1])
    assert blind_predictions == after["blind"][2]
    # the same check has power: the ViLT captioner's outputs do move with the pixels
    assert "pixel_values" in before["vilt"][0]
    assert not torch.allclose(before["vilt"][1], after["vilt"][1])


def test_targets_per_example_cycle_through_every_reference(cache_dir) -> None:
    from vlbench.data.shapes import build_shapes
    from vlbench.specs import load_task_spec
    from vlbench.tasks.captioning import CaptioningTask

    dataset = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache_dir, quiet=True)
    spec = load_task_spec("captioning")
    options = dict(spec.options, train_targets_per_example=2, max_target_length=40)
    task = CaptioningTask(spec.model_copy(update={"options": options}), dataset)
    references = task.references("train")[task._image_ids["train"][0]]

    def captions_of_first_image() -> list[str]:
        batch = task.collate("train", [0], ())
        return [task.vocab.decode(row) for row in batch["labels"].clamp(min=0).tolist()]

    seen = []
    for _ in range(3):  # three training passes: references 0-1, 2-3, 4-0
        iter(task.batches("train", 4, ()))
        seen.append(captions_of_first_image())
    assert [len(s) for s in seen] == [2, 2, 2]
    assert seen == [[references[i].lower() for i in pair] for pair in ((0, 1), (2, 3), (4, 0))]
    assert sum(len(r) for r in task._targets["train"]) == 5 * task.num_examples("train")
    # a newly wrapped model starts again from the first references
    from vlbench.models.blind import BlindEncoder

    task.wrap(BlindEncoder(32, 1))
    iter(task.batches("train", 4, ()))
    assert captions_of_first_image() == seen[0]
