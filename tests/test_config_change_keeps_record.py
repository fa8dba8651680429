"""A run whose config changed never replaces the finished record of the earlier config."""

from __future__ import annotations

import json

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.results.records import read_records

SMALL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
         "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def _run(results, lr):
    return main(["run", "--task", "vqa", "--baseline", "vilt-lora", "--results-dir", str(results), "--max-steps", "2",
                 "--quiet", "--lr", lr, *TINY_DATA, *SMALL])


def test_changed_config_keeps_the_earlier_record_and_its_files(tmp_path):
    folder = tmp_path / "vqa" / "shapes" / "vilt-lora"
    assert _run(tmp_path, "1e-3") == 0
    first = json.loads((folder / "seed-0.json").read_text())
    first_predictions = (folder / first["predictions_file"]).read_text()

    assert _run(tmp_path, "2e-3") == 0
    second = json.loads((folder / "seed-0.json").read_text())
    assert second["config_hash"] != first["config_hash"]
    kept = folder / f"seed-0.cfg-{first['config_hash']}.json"
    archived = json.loads(kept.read_text())
    assert archived["test"] == first["test"] and archived["config_hash"] == first["config_hash"]
    # the predictions and trained weights moved with it, and the record names them
    assert (folder / archived["predictions_file"]).read_text() == first_predictions
    assert archived["predictions_file"] != second["predictions_file"]
    assert (folder / archived["weights_file"]).is_file() and (folder / second["weights_file"]).is_file()

    # both configs are read, as separate rows of their own config
    found = read_records([tmp_path])
    assert not found.problems
    hashes = {r["config_hash"] for r in found.records}
    assert hashes == {first["config_hash"], second["config_hash"]}

    # going back to the first config reuses its kept record instead of training again
    before = kept.stat().st_mtime_ns
    assert _run(tmp_path, "1e-3") == 0
    assert kept.stat().st_mtime_ns == before
    assert json.loads((folder / "seed-0.json").read_text())["config_hash"] == second["config_hash"]
