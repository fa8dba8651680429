"""Paper-recipe task specs: each validates with its supporting baselines, the VQA recipes build the answer
vocabulary and training set by ViLT's rules (checked on fixtures), and each runs a few steps on a tiny dataset in
the official layout with tiny pretrained checkpoints (bert-base and coattention-pretrained on these checkpoints:
tests/test_pretrained_path.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import official_layouts
from tests.pretrained_fixtures import checkpoints  # noqa: F401
from tests.zoo_fixtures import one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# recipe -> dataset, the baselines that must take part, fixture writer
RECIPES = {
    "vqav2-vilt": ("vqav2", {"vilt-b32", "bert-base", "coattention-pretrained", "prior"}, official_layouts.write_vqav2),
    "flickr30k-vilt": ("flickr30k", {"vilt-b32", "retrieval-chance"}, official_layouts.write_flickr30k),
    "coco-vilt": ("coco-karpathy", {"vilt-b32", "retrieval-chance"}, official_layouts.write_coco_karpathy),
    "multi30k-en-de": ("multi30k", {"mt-transformer-tiny", "mmt-transformer-tiny"}, official_layouts.write_multi30k),
}


def _supporting(task: str) -> list[str]:
    from vlbench.specs import available_specs, load_baseline_spec

    return [name for name in available_specs("baselines") if task in load_baseline_spec(name).tasks]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_spec_validates_with_its_baselines(name):
    from vlbench.models.base import validate_model_config
    from vlbench.peft.config import parse_peft
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    dataset, required, _ = RECIPES[name]
    spec = load_task_spec(name)
    assert spec.dataset == dataset
    if name != "multi30k-en-de":  # ViLT's recipes: batch 256 per optimizer step, reached by accumulation
        assert spec.training.batch_size * spec.training.grad_accum_steps == 256
        assert (spec.training.epochs, spec.training.lr, spec.training.weight_decay, spec.training.warmup_ratio) == (
            10, 1e-4, 0.01, 0.1)
    supporting = _supporting(name)
    assert required <= set(supporting)
    for baseline in supporting:
        config = resolve_run_config(spec, load_baseline_spec(baseline))
        validate_model_config(config.baseline.model, config.baseline.config, baseline)
        parse_peft(config.baseline.peft, baseline)
    docs = (ROOT / "docs" / "pretrained.md").read_text(encoding="utf-8")
    assert f"vlbench run --task {name}" in docs  # each recipe's one command is documented


def _question(answers: dict[str, int], majority: str | None = None) -> tuple[list[str], str]:
    """Ten human answers ({answer: how many}) and the majority answer."""
    humans = [a for a, n in answers.items() for _ in range(n)]
    assert len(humans) == 10
    return humans, majority or max(answers, key=answers.get)


def _vqa_task(spec_name: str, splits: dict[str, list[tuple[list[str], str]]], dataset: str = "vqav2", **options):
    from datasets import Dataset, DatasetDict

    from vlbench.data.base import ArrayImageStore, VLDataset
    from vlbench.data.vqa_format import VQA_FEATURES
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    tables, qid = {}, 0
    for split, questions in splits.items():
        cols: dict[str, list] = {k: [] for k in VQA_FEATURES}
        for answers, majority in questions:
            qid += 1
            for key, value in (("question_id", qid), ("image_id", 0), ("question", f"q{qid}?"), ("question_type", "what"),
                               ("answer_type", "other"), ("answers", answers), ("answer_confidence", ["yes"] * 10),
                               ("multiple_choice_answer", majority)):
                cols[key].append(value)
        tables[split] = Dataset.from_dict(cols, features=VQA_FEATURES)
    images = ArrayImageStore(np.zeros((1, 2, 2, 3), np.uint8), [0])
    spec = load_task_spec(spec_name)
    spec = spec.model_copy(update={"options": {**spec.options, **options}})
    return VQATask(spec, VLDataset(dataset, "fp", images, {"vqa": DatasetDict(tables)}))


def _recipe_splits(test_name: str):
    """cat: majority of 9 training questions; dog: of 8 (reaches 9 only with a test question); rare: of 1.

    Two training questions have no class among their answers (rare/moose), one other has cat among its minority answers.
    """
    train = ([_question({"cat": 10})] * 9 + [_question({"dog": 10})] * 8 + [_question({"rare": 6, "moose": 4})]
             + [_question({"moose": 10})] + [_question({"rare": 7, "cat": 3})])
    test = [_question({"dog": 10}), _question({"rare": 10}), _question({"cat": 5, "moose": 5}, "cat")]
    return {"train": train, "val": [_question({"cat": 10})], test_name: test}


def test_vilt_recipe_vocabulary_counts_majority_answers_of_the_training_split_only():
    task = _vqa_task("vqav2-vilt", _recipe_splits("test"))
    # dog is the majority of 8 training questions (9 with the test split's): below 9, not a class here
    assert task.answers == ["cat"] and len(task.answers) == task.build_context_extras()["num_answers"]


def test_trainval_recipe_counts_the_minival_too_as_vilt_does():
    task = _vqa_task("vqav2-trainval", _recipe_splits("minival"))
    assert task.answers == ["cat", "dog"]  # dog reaches 9 only with the minival's question: the stated leakage


def test_questions_without_a_class_are_dropped_from_training_only():
    task = _vqa_task("vqav2-vilt", _recipe_splits("test"))
    # training: 9 cat + the rare/cat question keep a class; 8 dog, rare/moose and moose have none
    assert task.num_examples("train") == 10
    assert task.num_examples("validation") == 1 and task.num_examples("test") == 3  # evaluation keeps every question
    assert task.training_texts() == [f"q{i}?" for i in range(1, 10)] + ["q20?"]  # the questions with cat among their answers
    kept = _vqa_task("vqav2-vilt", _recipe_splits("test"), drop_unanswerable=False)
    assert kept.num_examples("train") == 20
    # the official metric still counts the unanswerable test questions: "cat" for all three scores 0, 0, 100
    assert task.score("test", ["cat", "cat", "cat"]).metrics["accuracy"] == pytest.approx(100 / 3, abs=0.01)


def test_no_answerable_training_question_is_one_clear_error():
    from vlbench.errors import DataError

    splits = {"train": [_question({"moose": 10})] * 3, "val": [_question({"cat": 10})] * 9,
              "test": [_question({"cat": 10})]}
    with pytest.raises(DataError, match="no training question has an answer among the 1 classes"):
        _vqa_task("vqav2-vilt", splits, answer_vocab_splits=["val"])


def test_generic_vqa_task_on_a_long_tailed_corpus_warns_once(capsys):
    tail = [_question({f"answer{i}": 1 for i in range(10 * k, 10 * k + 10)}, f"answer{10 * k}") for k in range(3)]
    task = _vqa_task("vqa", {"train": tail, "val": tail[:1], "test": tail[:1]})
    err = capsys.readouterr().err
    assert len(task.answers) == 30
    assert err.count("warning:") == 1 and "30 classes" in err and "--task vqav2-vilt" in err
    _vqa_task("vqa", {"train": [_question({"cat": 10})] * 4, "val": tail[:1], "test": tail[:1]})
    assert "warning" not in capsys.readouterr().err  # a closed answer set (the embedded data) is quiet
    assert len(_vqa_task("vqa", {"train": tail * 3, "val": tail[:1], "test": tail[:1]}, min_answer_count=2).answers) == 30
    assert "warning" not in capsys.readouterr().err  # a threshold above 1 is a deliberate choice


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_runs_a_few_steps_on_an_official_layout_fixture(name, checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main
    from vlbench.registry import DATASETS

    dataset, _, write = RECIPES[name]
    if dataset not in DATASETS:
        pytest.skip(f"dataset builder {dataset!r} is not registered in this checkout (it ships with the real-dataset "
                    "builders); the recipe spec itself is validated above")
    root = write(tmp_path / "data")
    results = tmp_path / "runs"
    base = ["run", "--task", name, "--dataset", f"{dataset}:{root}", "--results-dir", str(results), "--max-steps", "2",
            "--batch-size", "4", "--quiet", "--set", "task.options.image_size=64", "--set", "training.num_workers=0"]
    calls: list[tuple[list[str], list[str]]] = []
    if name == "multi30k-en-de":
        calls.append((["mt-transformer-tiny", "mmt-transformer-tiny"],
                      [f"baseline.config.backbone_weights={checkpoints['resnet']}", "task.options.beam_size=2"]))
    else:
        calls.append((["vilt-b32"], [f"baseline.pretrained={checkpoints['vilt']}"]))
    for baselines, sets in calls:
        args = list(base)
        for b in baselines:
            args += ["--baseline", b]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0, f"{name}: {baselines}"
        for b in baselines:
            record = json.loads(next((results / name).glob(f"*/{b}/seed-0.json")).read_text())
            assert record["training"]["steps"] == 2 and record["config"]["training"]["grad_accum_steps"] >= 1
            assert record["primary_metric"] in record["test"]["metrics"]
