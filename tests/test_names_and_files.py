"""Names from specs never form paths outside the results folder; files get the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vlbench.cli.main import main
from vlbench.io import atomic_write_json
from vlbench.results.records import record_path
from vlbench.specs import check_name


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "/abs", ".hidden", "a\\\\b", "x" * 101, "tab\\t"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ValueError, match="not a valid name"):
        check_name(name, "task name")


@pytest.mark.parametrize("name", ["vqa", "coco-karpathy", "vilt+lora", "text_bert.v2", "A1"])
def test_safe_names_pass(name):
    assert check_name(name, "task name") == name


@pytest.mark.parametrize("task, dataset, baseline", [("..", "..", ".."), (".", "", "."), ("a/../..", "/etc", "..\\\\..")])
def test_record_path_never_escapes(tmp_path, task, dataset, baseline):
    path = record_path(tmp_path / "runs", task, dataset, baseline, 0).resolve()
    assert path.is_relative_to((tmp_path / "runs").resolve())
    assert len(path.relative_to((tmp_path / "runs").resolve()).parts) == 4


def _spec(tmp_path, kind, name, body):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(f"name: {name!r}\n{body}")
    return str(path)


@pytest.mark.parametrize("field", ["task", "baseline", "dataset"])
def test_dotdot_names_in_specs_are_one_line_errors(tmp_path, capsys, field):
    results = tmp_path / "runs"
    task_body = "type: vqa\nprimary_metric: accuracy\n" + ("dataset: '..'\n" if field == "dataset" else "")
    task = _spec(tmp_path, "task", ".." if field == "task" else "mytask", task_body)
    baseline = _spec(tmp_path, "baseline", ".." if field == "baseline" else "mine", "model: answer-prior\ntasks: [mytask, '..']\n")
    assert main(["run", "--task", task, "--baseline", baseline, "--results-dir", str(results), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "not a valid name" in err
    assert not any(p.name != results.name for p in tmp_path.iterdir() if p.is_dir())


def test_set_cannot_rename_into_a_path(tmp_path, capsys):
    args = ["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(tmp_path), "--quiet"]
    for override in ("task.name=..", "baseline.name=../../x", "dataset=../up"):
        assert main([*args, "--set", override]) == 2
        assert "not a valid name" in capsys.readouterr().err
    assert main([*args, "--dataset", "../up"]) == 2
    assert "not a valid name" in capsys.readouterr().err


def test_atomic_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        path = atomic_write_json(tmp_path / "r.json", {"a": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_json(tmp_path / "s.json", {}).stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
