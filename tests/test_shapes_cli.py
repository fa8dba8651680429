"""``vlbench data build|show|stats`` through the CLI entry point ``main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlbench.cli.main import main

SMALL = ["--set", "data.train_images=60", "--set", "data.val_images=20", "--set", "data.test_images=20"]


def _only_folder(root: Path) -> Path:
    folders = [p for p in (root / "shapes").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1
    return folders[0]


def test_build_then_reuse(tmp_path: Path, capsys) -> None:
    assert main(["data", "build", "shapes", "--cache-dir", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    folder = _only_folder(tmp_path)
    assert folder.name in out and "train" in out and "vqa" in out
    stamp = (folder / "info.json").stat().st_mtime_ns
    assert main(["data", "build", "shapes", "--cache-dir", str(tmp_path), "--quiet", *SMALL]) == 0
    assert (folder / "info.json").stat().st_mtime_ns == stamp, "reused, not rebuilt"
    assert capsys.readouterr().out == ""


def test_build_uses_env_cache_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "env-cache"))
    assert main(["data", "build", "shapes", "-q", *SMALL]) == 0
    assert _only_folder(tmp_path / "env-cache").is_dir()


def test_show_writes_a_readable_png(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    code = main(["data", "show", "shapes", "--out", str(out), "--split", "val", "--n", "4", "--cache-dir", str(tmp_path), "-q", *SMALL])
    assert code == 0
    picture = Image.open(out)
    assert picture.format == "PNG"
    # 2 x 2 tiles, each wider than the 4x upscaled 64 px image
    assert picture.width >= 2 * 256 and picture.height >= 2 * 256


def test_stats_json(tmp_path: Path, capsys) -> None:
    assert main(["data", "stats", "shapes", "--format", "json", "--cache-dir", str(tmp_path), *SMALL]) == 0
    bounds = json.loads(capsys.readouterr().out)
    for key in ("prior", "question_majority", "question_oracle", "plurality_ceiling"):
        assert set(bounds[key]["perAnswerType"]) == {"yes/no", "number", "other"}
    # the best per-string answer fitted on test itself is an upper bound for a text-only model
    assert bounds["prior"]["overall"] <= bounds["question_oracle"]["overall"] < 75
    assert bounds["plurality_ceiling"]["overall"] > 97


def test_stats_table(tmp_path: Path, capsys) -> None:
    assert main(["data", "stats", "shapes", "--cache-dir", str(tmp_path), "-q", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "prior" in out and "text-only" in out and "yes/no" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["data", "build", "shapes", "--set", "data.train_imgs=5"], "train_imgs"),
        (["data", "build", "shapes", "--set", "train_images=5"], "data.KEY=VALUE"),
        (["data", "build", "shapes", "--set", "data.seed=-3"], "seed"),
        (["data", "build", "shapez"], "Did you mean 'shapes'"),
        (["data", "show", "shapes", "--out", "grid.jpg", "--set", "data.train_images=60"], ".png"),
        (["data", "show", "shapes", "--out", "g.png", "--split", "dev", *SMALL], "'dev'"),
        (["data", "show", "shapes", "--out", "g.png", "--n", "0"], "--n"),
        (["data", "stats", "shapes", "--format", "xml"], "xml"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, argv: list[str], needle: str) -> None:
    code = main([*argv, "--cache-dir", str(tmp_path), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err
