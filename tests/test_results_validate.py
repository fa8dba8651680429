"""Record schema, `vlbench validate`, and `vlbench table` on bad records and with --out/--metric/--task."""

from __future__ import annotations

import json

import pytest

from tests.results_fixtures import make_record, write_record
from vlbench.cli.main import main
from vlbench.results.validate import record_problem, record_schema

ITEMS = {str(i): float(i % 2) for i in range(10)}


def _folder(tmp_path):
    write_record(tmp_path, make_record("vilt", 0, ITEMS))
    write_record(tmp_path, make_record("vilt", 1, status="failed"))
    return tmp_path


def test_the_schema_ships_with_the_package_and_accepts_good_records():
    schema = record_schema()
    assert schema["properties"]["schema"] == {"enum": [1, 2, 3, 4]}
    assert record_problem(make_record()) is None
    assert record_problem(make_record(status="failed")) is None
    old = make_record()
    old.pop("status")
    old["schema"] = 1
    assert record_problem(old) is None  # schema 1 records are read as finished runs


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("seed"), "'seed' is a required property"),
    (lambda r: r.update(seed="zero"), "'seed'"),
    (lambda r: r["test"]["metrics"].update(accuracy="high"), "test.metrics.accuracy"),
    (lambda r: r["parameters"].update(trainable=-1), "parameters.trainable"),
    (lambda r: r.update(status="done"), "status"),
    (lambda r: r.update(schema=7), "schema"),
    (lambda r: r.update(robustness={"metric": "accuracy", "split": "test", "seed": 0, "clean": 1.0,
                                    "suites": ["corruptions"], "corruptions": {"applies": True}}), "robustness"),
    (lambda r: r.update(robustness={"metric": "accuracy", "split": "test", "seed": 0, "clean": 1.0,
                                    "suites": ["fog"]}), "robustness.suites"),
    (lambda r: r.pop("per_example"), "per_example"),
    (lambda r: r["test"].update(metrics={"other": 1.0}), "primary metric 'accuracy' is missing"),
])
def test_bad_records_get_one_line(change, message):
    record = make_record()
    change(record)
    problem = record_problem(record)
    assert problem and message in problem and "\n" not in problem


def test_failed_record_may_not_carry_a_test_block():
    record = make_record(status="failed")
    record["test"] = {"metrics": {"accuracy": 1.0}}
    assert record_problem(record) is not None


def test_validate_cli(tmp_path, capsys):
    folder = _folder(tmp_path)
    assert main(["validate", str(folder)]) == 0
    assert "2 valid run records" in capsys.readouterr().out
    bad = write_record(folder, make_record("film", 0))
    bad.write_text(bad.read_text()[:200])  # truncated mid-write
    mistyped = write_record(folder, {**make_record("coattention", 0), "seed": "0"})
    assert main(["validate", str(folder)]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert any(str(bad) in line and "truncated" in line for line in errors)
    assert any(str(mistyped) in line and "'seed'" in line for line in errors)
    assert "2 of 4 run records are invalid" in errors[-1]


def test_table_refuses_a_bad_record_with_one_line(tmp_path, capsys):
    folder = _folder(tmp_path)
    bad = write_record(folder, make_record("film", 0))
    bad.write_text(bad.read_text()[:-30])
    assert main(["table", str(folder), "--format", "md"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(bad) in err and "--skip-invalid" in err
    assert main(["table", str(folder), "--format", "json", "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {bad}" in captured.err
    assert {r["baseline"] for r in json.loads(captured.out)} == {"vilt"}


def test_table_out_metric_and_task(tmp_path, capsys):
    folder = _folder(tmp_path)
    write_record(folder, make_record("vilt", 0, ITEMS, task="other", config_hash="b" * 16))
    out = tmp_path / "table.csv"
    assert main(["table", str(folder), "--format", "csv", "--task", "vqa", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("task,dataset,baseline,config,") and ",other," not in text
    assert main(["table", str(folder), "--metric", "nope"]) == 2
    assert "known metrics: accuracy" in capsys.readouterr().err
    assert main(["table", str(folder), "--format", "xml"]) == 2
    assert main(["table", str(folder), "--out", str(tmp_path)]) == 2
    assert main(["table", str(folder), "--format", "rich", "--out", str(tmp_path / "t.txt")]) == 0
    assert "vqa on shapes" in (tmp_path / "t.txt").read_text()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("command", ["validate", "table"])
def test_a_hand_edited_non_finite_number_is_refused(tmp_path, capsys, constant, command):
    # vlbench writes records with allow_nan=False: a NaN or Infinity was put there by hand and must not reach a mean
    path = write_record(tmp_path, make_record("vilt", 0, ITEMS))
    path.write_text(path.read_text().replace('"1": 1.0', f'"1": {constant}', 1))
    assert constant in path.read_text()
    assert main([command, str(tmp_path)]) == 2
    assert f"{constant} is not a JSON number" in capsys.readouterr().err
