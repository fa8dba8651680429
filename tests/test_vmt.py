"""Visual machine translation end to end: both variants through the CLI for a few steps, prediction files
that `vlbench score` re-scores to the recorded BLEU/chrF, and a text-only model that really sees no image."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.data.shapes.world import COLORS, SHAPES

SMALL = [
    *TINY_DATA,
    "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
    "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64",
    "--set", "task.options.decoder.num_layers=1", "--set", "task.options.decoder.intermediate_size=64",
    "--set", "task.options.max_target_length=14", "--set", "task.options.beam_size=2",
]
TASKS = ("vmt", "vmt-masked")
BASELINES = ("mt-text", "mmt-vilt")


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, cache_dir):
    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    for task in TASKS:
        code = main(["run", "--task", task, "--all-baselines", "--results-dir", str(results), "--max-steps", "3",
                     "--quiet", *SMALL])
        assert code == 0
    return results


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("baseline", BASELINES)
def test_run_writes_line_files_that_score_reproduces(finished_runs, task, baseline, capsys) -> None:
    folder = finished_runs / task / "shapes" / baseline
    record = json.loads((folder / "seed-0.json").read_text())
    assert record["primary_metric"] == "BLEU" and record["training"]["steps"] == 3
    assert record["test"]["details"]["source_field"] == ("source" if task == "vmt" else "source_masked")
    assert record["test"]["details"]["signatures"]["BLEU"].startswith("nrefs:1|case:mixed")
    hyp = folder / record["predictions_file"]
    ref = folder / "seed-0.predictions.ref.txt"
    assert hyp.suffix == ".txt"
    n = record["data"]["sizes"]["test"]
    hyps, refs = hyp.read_text(encoding="utf-8").split("\n"), ref.read_text(encoding="utf-8").split("\n")
    assert len(hyps) == len(refs) == n + 1 and hyps[-1] == refs[-1] == ""
    assert len(record["per_example"]["test"]) == n
    capsys.readouterr()
    assert main(["score", "--task", "vmt", "-p", str(hyp), "-r", str(ref), "--format", "json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    for name in ("BLEU", "chrF"):
        assert rescored[name] == pytest.approx(record["test"]["metrics"][name], abs=1e-9)


def test_each_variant_has_its_own_table_against_text_only_mt(finished_runs, capsys) -> None:
    capsys.readouterr()
    assert main(["table", str(finished_runs), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["task"], r["baseline"]) for r in rows} == {(t, b) for t in TASKS for b in BASELINES}
    for row in rows:
        assert row["reference"] == "mt-text"
        if row["baseline"] == "mt-text":
            assert row["delta_vs_reference"] is None


def _task(cache_dir, name: str):
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vmt import VMTTask

    dataset = build_shapes(None, {"train_images": 48, "val_images": 12, "test_images": 12}, cache_dir, quiet=True)
    spec = load_task_spec(name)
    options = dict(spec.options, max_target_length=12, beam_size=2,
                   decoder={"num_layers": 1, "num_heads": 2, "intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0})
    task = VMTTask(spec.model_copy(update={"options": options}), dataset)
    tokenizer = word_level_tokenizer(build_word_vocab(task.training_texts()))
    task.prepare(tokenizer)
    return dataset, task, tokenizer


def test_masked_sources_hide_colours_and_shapes(cache_dir) -> None:
    _, full, _ = _task(cache_dir, "vmt")
    _, masked, tokenizer = _task(cache_dir, "vmt-masked")
    assert full.references("test") == masked.references("test")
    hidden = set(COLORS) | set(SHAPES)
    assert all(hidden & set(s.lower().rstrip(".").split()) for s in full._sources("train"))
    assert not any(hidden & set(s.lower().rstrip(".").split()) for s in masked._sources("train"))
    vocab = tokenizer.get_vocab()
    assert not hidden & set(vocab)
    assert {"kreis", "quadrat"} & {w.lower() for w in masked.vocab.itos}


def test_text_only_mt_receives_no_image_information(cache_dir) -> None:
    from vlbench.data.base import ArrayImageStore
    from vlbench.models.base import BuildContext, build_model
    from vlbench.registry import MODELS

    dataset, task, tokenizer = _task(cache_dir, "vmt-masked")
    context = BuildContext("vmt", tokenizer, 64, 32, task.build_context_extras())
    small = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "dropout": 0.0,
             "attention_dropout": 0.0}
    models = {}
    for name in ("bert-text", "vilt"):
        torch.manual_seed(0)
        models[name] = (task.wrap(build_model(name, small, None, context, name)).eval(), MODELS.get(name).modalities)

    def outputs(name):
        model, modalities = models[name]
        batch = task.collate("train", list(range(8)), modalities)
        with torch.no_grad():
            logits = model(batch)
        return batch, logits, task.predict(model, "test", 64, modalities, torch.device("cpu"))

    before = {name: outputs(name) for name in models}
    ids = dataset.images.ids()
    noise = torch.randint(0, 256, (len(ids), 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    dataset.images = ArrayImageStore(noise, ids)
    after = {name: outputs(name) for name in models}
    assert "pixel_values" not in before["bert-text"][0]
    assert torch.equal(before["bert-text"][1], after["bert-text"][1])
    assert before["bert-text"][2] == after["bert-text"][2]
    assert not torch.allclose(before["vilt"][1], after["vilt"][1])


def test_perturbed_sources_reach_a_generating_models_prompts_and_are_restored(cache_dir) -> None:
    # the robustness suites perturb the sources; a generating model reads them from its prompts, not the tokens
    _, task, tokenizer = _task(cache_dir, "vmt")
    before = task.generator_prompts("test", [0, 1])
    typos = [s.upper() for s in task.input_texts("test")]
    restore = task.replace_input_texts("test", typos, tokenizer)
    assert task.generator_prompts("test", [0, 1]) == [f"English: {s} German:" for s in typos[:2]] != before
    restore()
    assert task.generator_prompts("test", [0, 1]) == before
