"""End to end through the CLI: a few-step run, record contents, skip and --force, tables, bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

SMALL_MODEL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
               "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def _run(results, *extra):
    return main(["run", "--task", "vqa", "--results-dir", str(results), "--max-steps", "3", "--quiet",
                 *TINY_DATA, *SMALL_MODEL, *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir):
    import os

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    baselines = ["--baseline", "prior", "--baseline", "text-bert", "--baseline", "vilt"]
    assert _run(results, *baselines, "--seeds", "0,1") == 0
    return results


def test_records_are_complete(finished_run):
    record_file = finished_run / "vqa" / "shapes" / "vilt" / "seed-1.json"
    record = json.loads(record_file.read_text())
    for key in ("config", "config_hash", "seed", "versions", "device", "data", "parameters", "timing", "training",
                "test", "per_example", "predictions_file", "memory", "git_commit", "created"):
        assert key in record, key
    assert record["seed"] == 1 and record["task"] == "vqa" and record["baseline"] == "vilt"
    assert record["config"]["baseline"]["config"]["hidden_size"] == 32
    assert record["config"]["task"]["data"]["train_images"] == 48
    assert {"torch", "transformers", "python", "vlbench"} <= set(record["versions"])
    assert record["data"]["fingerprint"] and record["data"]["sizes"]["test"] > 0
    assert 0 < record["parameters"]["trainable"] == record["parameters"]["total"]
    assert record["training"]["steps"] == 3 and len(record["training"]["history"]) >= 1
    assert {"train_loss", "validation", "epoch"} <= set(record["training"]["history"][0])
    assert 0.0 <= record["test"]["metrics"]["accuracy"] <= 100.0
    assert record["schema"] == 4 and record["status"] == "ok"
    assert record["emap"] is None and record["robustness"] is None  # neither asked
    # honest timing: training without its validation passes; evaluation (validation, test, ablation) apart
    timing = record["timing"]
    assert 0 < timing["train_seconds"] and 0 < timing["eval_seconds"]
    assert timing["train_seconds"] + timing["eval_seconds"] <= timing["wall_seconds"]
    assert record["memory"] == {"peak_bytes": None, "kind": "not_measured"}  # CPU: no process RSS as model memory
    # the image model was also scored with blank and shuffled images
    ablation = record["ablation"]
    assert ablation["metric"] == "accuracy" and ablation["real"] == record["test"]["metrics"]["accuracy"]
    assert 0.0 <= ablation["blank"] <= 100.0 and 0.0 <= ablation["shuffled"] <= 100.0
    assert ablation["shuffled_within"] == "test"  # deranged among the test images only (a store refuses others)
    text_only = json.loads((finished_run / "vqa" / "shapes" / "text-bert" / "seed-0.json").read_text())
    assert text_only["ablation"] is None and text_only["modalities"] == ["text"]
    # per-example scores cover every test question and average to the reported accuracy
    per_example = record["per_example"]["test"]
    assert len(per_example) == record["data"]["sizes"]["test"]
    mean = 100 * sum(per_example.values()) / len(per_example)
    assert abs(mean - record["test"]["metrics"]["accuracy"]) < 0.01
    predictions = json.loads((record_file.parent / record["predictions_file"]).read_text())
    assert len(predictions) == len(per_example)
    assert set(predictions[0]) == {"question_id", "answer"} and isinstance(predictions[0]["question_id"], int)


def test_prior_has_no_parameters_and_text_bert_is_the_reference(finished_run, capsys):
    assert main(["table", str(finished_run), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {(r["baseline"], r["metric"]): r for r in rows}
    prior = by_key[("prior", "accuracy")]
    assert prior["trainable_params"] == 0 and prior["n"] == 2 and prior["std"] == 0.0
    vilt = by_key[("vilt", "accuracy")]
    bert = by_key[("text-bert", "accuracy")]
    assert vilt["delta_vs_reference"] == pytest.approx(vilt["mean"] - bert["mean"])
    assert bert["delta_vs_reference"] is None
    for row in rows:
        assert {"task", "baseline", "metric", "mean", "std", "n"} <= set(row)


def test_existing_records_are_skipped_unless_forced(finished_run, capsys):
    record_file = finished_run / "vqa" / "shapes" / "text-bert" / "seed-0.json"
    before = record_file.read_text()
    assert main(["run", "--task", "vqa", "--baseline", "text-bert", "--results-dir", str(finished_run),
                 "--max-steps", "3", "--seeds", "0", *TINY_DATA, *SMALL_MODEL]) == 0
    assert "skip text-bert seed 0" in capsys.readouterr().out
    assert record_file.read_text() == before
    assert _run(finished_run, "--baseline", "text-bert", "--seeds", "0", "--force") == 0
    after = json.loads(record_file.read_text())
    assert after["created"] >= json.loads(before)["created"]
    assert after["config_hash"] == json.loads(before)["config_hash"]


def test_same_seed_same_numbers_on_cpu(finished_run, tmp_path):
    assert _run(tmp_path, "--baseline", "vilt", "--seeds", "1") == 0
    first = json.loads((finished_run / "vqa" / "shapes" / "vilt" / "seed-1.json").read_text())
    again = json.loads((tmp_path / "vqa" / "shapes" / "vilt" / "seed-1.json").read_text())
    assert again["training"]["history"][0]["train_loss"] == first["training"]["history"][0]["train_loss"]
    assert again["per_example"] == first["per_example"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--task", "vqaa", "--all-baselines"], "Did you mean 'vqa'"),
        (["run", "--task", "vqa", "--baseline", "vitl"], "Did you mean 'vilt'"),
        (["run", "--task", "vqa", "--all-baselines", "--dataset", "shapez"], "Did you mean 'shapes'"),
        (["run", "--task", "vqa", "--all-baselines", "--seeds", "1,two"], "--seeds"),
        (["run", "--task", "vqa", "--all-baselines", "--set", "training.epochs=-2"], "training.epochs"),
        (["run", "--task", "vqa", "--all-baselines", "--precision", "half"], "training.precision"),
        (["run", "--task", "vqa", "--all-baselines", "--set", "baseline.config.hidden_sise=3"], "hidden_sise"),
        (["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", "/proc/forbidden"], "cannot be written"),
        (["run", "--task", "vqa"], "--baseline"),
        (["list", "things"], "cannot list"),
        (["run", "--tsk", "vqa"], "No such option"),
        (["table", "/nonexistent/dir"], "does not exist"),
        (["run", "--task", "vqa", "--all-baselines", "--plugin", "/nonexistent/plugin.py"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    if args[0] == "run" and "--results-dir" not in args:
        args = args + ["--results-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_invalid_spec_file_is_named(tmp_path, capsys):
    spec = tmp_path / "mytask.yaml"
    spec.write_text("type: vqa\nprimary_metric: accuracy\ntraining: {batch_size: zero}\n")
    assert main(["run", "--task", str(spec), "--all-baselines", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mytask.yaml" in err and "training.batch_size" in err


def test_list_json_shapes(capsys):
    assert main(["list", "baselines", "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    vilt = next(i for i in items if i["name"] == "vilt")
    assert vilt["tasks"] and vilt["description"]
    for kind in ("tasks", "datasets", "metrics"):
        assert main(["list", kind, "--format", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed and all({"name", "description"} <= set(i) for i in listed)


def test_records_carry_the_question_only_bounds_of_their_data(finished_run):
    def record(baseline):
        return json.loads((finished_run / "vqa" / "shapes" / baseline / "seed-0.json").read_text())

    bounds = record("vilt")["data"]["question_only"]
    assert bounds == record("text-bert")["data"]["question_only"] and bounds["metric"] == "accuracy"
    # the data's prior is what the prior baseline scores; no text-only model can pass the per-string oracle
    assert bounds["prior"] == record("prior")["test"]["metrics"]["accuracy"]
    assert bounds["prior"] <= bounds["question_majority"] <= bounds["question_oracle"] <= bounds["plurality_ceiling"]
    assert record("text-bert")["test"]["metrics"]["accuracy"] <= bounds["question_oracle"]
