"""`primary_metric` selects the kept checkpoint; it is checked when the run is planned; `metrics:` is gone."""

from __future__ import annotations

import json

import pytest

from tests.zoo_fixtures import one_thread  # noqa: F401
from vlbench.cli.main import main
from vlbench.errors import SpecError
from vlbench.peft.config import complete_peft
from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config
from vlbench.tasks.preflight import complete_config


def _check(task, baseline, *overrides):
    config = resolve_run_config(load_task_spec(task), load_baseline_spec(baseline), overrides=list(overrides))
    return complete_config(config, "test", complete_peft(config.baseline.peft, "test"))


@pytest.mark.parametrize("task, baseline, name", [
    ("vqa", "vilt", "accuracy"), ("vqa", "vilt", "accuracy/yes/no"), ("retrieval", "retrieval-dual", "t2i_R@1"),
    ("retrieval", "retrieval-dual", "rsum"), ("captioning", "captioner-vilt", "Bleu_4"), ("vmt", "mt-text", "chrF"),
])
def test_every_metric_a_task_type_reports_can_be_primary(task, baseline, name):
    assert _check(task, baseline, f"task.primary_metric={name}").task.primary_metric == name


@pytest.mark.parametrize("task, baseline, name, allowed", [
    ("vqa", "vilt", "bogus", "accuracy, accuracy/<answer type>"),
    ("vqa", "vilt", "accuracy/", "accuracy/<answer type>"),
    ("retrieval", "retrieval-dual", "i2t_medr", "t2i_R@10"),  # reported, but lower is better
    ("retrieval", "retrieval-dual", "accuracy", "rsum"),
    ("captioning", "captioner-vilt", "SPICE", "CIDEr"),  # test split only
    ("captioning", "captioner-vilt", "METEOR", "validation_meteor=true"),
    ("vmt", "mt-text", "BLEU-4", "BLEU, chrF"),
])
def test_a_metric_the_validation_does_not_report_is_refused_when_planned(task, baseline, name, allowed):
    with pytest.raises(SpecError) as info:
        _check(task, baseline, f"task.primary_metric={name}")
    message = str(info.value)
    assert "'primary_metric'" in message and repr(name) in message and allowed in message
    assert _check("captioning", "captioner-vilt", "task.primary_metric=METEOR", "task.options.validation_meteor=true")


def test_a_spec_with_the_removed_metrics_list_is_refused_with_what_to_do(tmp_path):
    spec = tmp_path / "old.yaml"
    spec.write_text("type: vqa\nmetrics: [vqa_accuracy]\nprimary_metric: accuracy\n")
    with pytest.raises(SpecError, match="field 'metrics' was removed.*primary_metric"):
        load_task_spec(str(spec))


def test_the_task_primary_value_is_the_spec_primary_metric():
    from vlbench.registry import TASK_TYPES

    task_cls = TASK_TYPES.get("retrieval")
    task = task_cls.__new__(task_cls)  # primary_value reads only the spec
    task.spec = load_task_spec("retrieval").model_copy(update={"primary_metric": "t2i_R@1"})
    assert task.primary_value({"rsum": 250.0, "t2i_R@1": 40.0}) == 40.0
    with pytest.raises(SpecError, match="t2i_R@1"):
        task.primary_value({"rsum": 250.0})


# validation scores scripted per pass: rsum is best at epoch 1, t2i_R@1 at epoch 2 (later calls: the test split)
SCRIPT = [{"rsum": 200.0, "t2i_R@1": 10.0}, {"rsum": 100.0, "t2i_R@1": 50.0}]


@pytest.mark.parametrize("primary, kept", [("rsum", 1), ("t2i_R@1", 2)])
def test_the_primary_metric_decides_which_epoch_is_kept(tmp_path, monkeypatch, one_thread, primary, kept):
    import vlbench.metrics.retrieval as retrieval

    real, calls = retrieval.retrieval_evaluate, []

    def scripted(similarity, text_image):
        result = real(similarity, text_image)
        if len(calls) < len(SCRIPT):
            result.update(SCRIPT[len(calls)])
        calls.append(len(text_image))
        return result

    monkeypatch.setattr(retrieval, "retrieval_evaluate", scripted)
    results = tmp_path / "runs"
    args = ["run", "--task", "retrieval", "--baseline", "retrieval-dual", "--results-dir", str(results), "--quiet",
            "--epochs", "2", "--batch-size", "16", "--set", "training.patience=0", "--set", f"task.primary_metric={primary}",
            "--set", "task.data.train_images=16", "--set", "task.data.val_images=4", "--set", "task.data.test_images=4",
            "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_heads=2",
            "--set", "baseline.config.intermediate_size=64", "--set", "baseline.config.image_layers=1",
            "--set", "baseline.config.text_layers=1"]
    assert main(args) == 0
    record = json.loads((results / "retrieval" / "shapes" / "retrieval-dual" / "seed-0.json").read_text())
    history = record["training"]["history"]
    assert [h["validation"] for h in history] == [s[primary] for s in SCRIPT]  # what was compared, per epoch
    assert record["training"]["best_epoch"] == kept and record["training"]["best_validation"] == SCRIPT[kept - 1][primary]
    assert record["primary_metric"] == primary and primary in record["test"]["metrics"]
