"""A baseline with a hostile name goes through `vlbench run`, `table` and `leaderboard` intact and inert."""

from __future__ import annotations

import json

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

NAME = "[/x]<b>|=1+2"


def test_hostile_baseline_name_end_to_end(tmp_path, capsys):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(json.dumps({"name": NAME, "description": "image model with an unfriendly name", "model": "film",
                                "family": "early-fusion", "tasks": ["vqa"],
                                "config": {"hidden_size": 16, "stem_channels": [8, 8, 8, 8], "num_layers": 1,
                                           "embedding_size": 16}}))
    runs = tmp_path / "runs"
    assert main(["run", "--task", "vqa", "--baseline", str(spec), "--results-dir", str(runs), "--max-steps", "2",
                 "--seeds", "0", *TINY_DATA]) == 0
    capsys.readouterr()
    for fmt in ("rich", "md", "csv", "latex", "json", "html"):
        assert main(["table", str(runs), "--format", fmt]) == 0, fmt
    out = capsys.readouterr().out
    assert NAME in out  # rich and JSON print it as itself
    assert main(["validate", str(runs)]) == 0
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "site")]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert "<b>" not in page and "[/x]&lt;b&gt;|=1+2" in page
    record = json.loads(next(runs.rglob("seed-0.json")).read_text())
    assert record["baseline"] == NAME and record["ablation"]["metric"] == "accuracy"
