"""`vlbench peft`: trainable share and the share of full fine-tuning's gain over text-only, against hand computation."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.results_fixtures import make_record, write_record
from vlbench.cli.main import main
from vlbench.results.peft_share import peft_shares, render_shares
from vlbench.results.records import read_records

N = 80
_rng = np.random.default_rng(11)
TEXT = (_rng.random(N) < 0.45).astype(float)
FULL = np.where(_rng.random(N) < 0.6, 1.0, TEXT)  # right on most items the text model misses
KEEPS = np.where(np.arange(N) % 3 == 0, TEXT, FULL)  # keeps about two thirds of the full model's gain
NEAR = TEXT.copy()
NEAR[[4, 9]] = 1.0 - NEAR[[4, 9]]  # a joint model with no detectable gain
HOSTILE = "vilt-lora-<b>|x`_&%$"


def _write(folder: Path, name: str, scores: np.ndarray, *, model: str, trainable: int, peft: dict | None = None,
           modalities: tuple[str, ...] = ("text", "image")) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    for seed in (0, 1, 2):  # every seed scores the same: the seed-and-item test is a paired t-test over items
        record = make_record(name, seed, {f"{i:03d}": float(v) for i, v in enumerate(scores)}, config_hash=digest,
                             trainable=trainable, modalities=list(modalities))
        record["config"]["baseline"].update(model=model, peft=peft)
        write_record(folder, record, name=re.sub(r"[^a-z0-9-]", "_", name))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("peft-runs")
    _write(folder, "text-bert", TEXT, model="bert-text", trainable=1000, modalities=("text",))
    _write(folder, "text-bert-lora", TEXT, model="bert-text", trainable=40, peft={"method": "lora", "r": 8},
           modalities=("text",))
    _write(folder, "vilt", FULL, model="vilt", trainable=2000)
    _write(folder, HOSTILE, KEEPS, model="vilt", trainable=50, peft={"method": "lora", "r": 8})
    _write(folder, "film", NEAR, model="film", trainable=900)
    _write(folder, "film-bitfit", NEAR, model="film", trainable=30, peft={"method": "bitfit"})
    return folder


@pytest.fixture(scope="module")
def rows(runs):
    return {r.baseline: r for r in peft_shares(read_records([runs]).records)}


def test_share_kept_and_its_interval_equal_a_brute_force_paired_t_inversion(rows):
    row = rows[HOSTILE]
    assert (row.full, row.reference, row.method, row.seeds) == ("vilt", "text-bert", "lora", [0, 1, 2])
    assert row.param_share == pytest.approx(50 / 2000)
    assert row.kept == pytest.approx((KEEPS.mean() - TEXT.mean()) / (FULL.mean() - TEXT.mean()))
    grid = np.linspace(-1, 2, 30001)
    kept = [k for k in grid if stats.ttest_1samp(100 * (KEEPS - k * FULL - (1 - k) * TEXT), 0).pvalue >= 0.05]
    assert row.kept_ci == pytest.approx((min(kept), max(kept)), abs=2e-4)
    assert 0.3 < row.kept_ci[0] < row.kept < row.kept_ci[1] < 0.95


def test_gains_are_the_paired_tests_against_the_text_only_reference(rows):
    row = rows[HOSTILE]
    for gain, p, scores in ((row.gain, row.gain_p, KEEPS), (row.full_gain, row.full_gain_p, FULL)):
        assert gain == pytest.approx(100 * (scores.mean() - TEXT.mean()))
        assert p == pytest.approx(stats.ttest_rel(100 * scores, 100 * TEXT).pvalue)
    assert row.mean == pytest.approx(100 * KEEPS.mean()) and row.std == pytest.approx(0.0)


def test_rows_without_a_gain_to_keep_say_why_and_show_no_share(rows):
    text = rows["text-bert-lora"]
    assert text.kept is None and "is the text-only reference" in text.notes[0]
    assert text.param_share == pytest.approx(40 / 1000)
    film = rows["film-bitfit"]
    assert film.kept is None and film.full == "film"
    assert "no significant gain over text-bert" in film.notes[0]


def test_formats_escape_names_and_carry_the_numbers(rows):
    ordered = list(rows.values())
    markdown = render_shares(ordered, "md")
    assert "<b>" not in markdown and "&lt;b&gt;" in markdown and "\\|x" in markdown
    assert f"{100 * rows[HOSTILE].kept:.1f}%" in markdown and "2.5%" in markdown
    latex = render_shares(ordered, "latex")
    assert r"\&\%\$" in latex and "\\begin{tabular}" in latex
    table = list(csv.DictReader(io.StringIO(render_shares(ordered, "csv"))))
    by_name = {r["baseline"]: r for r in table}
    assert float(by_name[HOSTILE]["kept"]) == pytest.approx(rows[HOSTILE].kept)
    assert float(by_name[HOSTILE]["kept_ci_low"]) == pytest.approx(rows[HOSTILE].kept_ci[0])
    assert by_name["film-bitfit"]["kept"] == ""


def test_cli_writes_the_table_and_refuses_bad_input(runs, tmp_path, capsys):
    out = tmp_path / "peft.md"
    assert main(["peft", str(runs), "--task", "vqa", "--out", str(out)]) == 0
    assert "share of full's gain kept" in out.read_text()
    assert main(["peft", str(runs), "--format", "html"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --format 'html'")
    only_full = tmp_path / "full"
    _write(only_full, "vilt", FULL, model="vilt", trainable=2000)
    assert main(["peft", str(only_full)]) == 2
    assert "no PEFT run records" in capsys.readouterr().err


def test_reference_option_measures_the_gains_from_another_baseline(runs, capsys):
    rows = {r.baseline: r for r in peft_shares(read_records([runs]).records, reference="film")}
    row = rows[HOSTILE]
    assert row.reference == "film" and row.gain == pytest.approx(100 * (KEEPS.mean() - NEAR.mean()))
    assert row.kept == pytest.approx((KEEPS.mean() - NEAR.mean()) / (FULL.mean() - NEAR.mean()))
    capsys.readouterr()
    assert main(["peft", str(runs), "--reference", "film"]) == 0
    assert "text-only reference (film)" in capsys.readouterr().out
