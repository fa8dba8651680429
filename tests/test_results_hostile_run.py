"""A real run record whose names were edited to hostile ones (a record from elsewhere) stays text everywhere."""

from __future__ import annotations

import json

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

NAME = "[/x]<b>|=1+2"


def test_hostile_names_in_a_real_record(tmp_path, capsys):
    spec = tmp_path / "film-small.yaml"
    spec.write_text(json.dumps({"name": "film-small", "model": "film", "family": "early-fusion", "tasks": ["vqa"],
                                "config": {"hidden_size": 16, "stem_channels": [8, 8, 8, 8], "num_layers": 1,
                                           "embedding_size": 16}}))
    runs = tmp_path / "runs"
    assert main(["run", "--task", "vqa", "--baseline", str(spec), "--results-dir", str(runs), "--max-steps", "2",
                 "--seeds", "0", "--quiet", *TINY_DATA]) == 0
    path = next(runs.rglob("seed-0.json"))
    record = json.loads(path.read_text())
    assert record["ablation"]["metric"] == "accuracy" and record["status"] == "ok"
    record["baseline"] = record["config"]["baseline"]["name"] = NAME
    record["dataset"] = "two\nlines"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["validate", str(runs)]) == 0
    for fmt in ("rich", "md", "csv", "latex", "json", "html"):
        assert main(["table", str(runs), "--format", fmt]) == 0, fmt
    out = capsys.readouterr().out
    assert NAME in out  # rich and JSON print it as itself
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "site")]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert "<b>" not in page and "[/x]&lt;b&gt;|=1+2" in page
