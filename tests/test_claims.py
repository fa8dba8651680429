"""The claims page: verdicts, effects, intervals and p-values against hand-computed references on small
record sets built here (a supported claim, a not-supported one, claims whose records are missing),
escaping of hostile names in Markdown and HTML, and byte-stable output."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.results_fixtures import make_record, write_record
from vlbench.cli.main import main
from vlbench.results.claims import (NOT_SUPPORTED, NOT_TESTED, SUPPORTED, ClaimsPage, Options, build_claims, holm,
                                    record_sets)
from vlbench.results.claims.commands import run_command
from vlbench.results.claims.model import tost_p
from vlbench.results.claims.render import html_section, markdown_page
from vlbench.results.records import read_records
from vlbench.results.seeditem import SeedItemTest, contrast_test, seed_item_test
from vlbench.specs import DEFAULT_EMAP_ITEMS

HOSTILE = "<script>alert(1)</script>|x`````y"
N = 60
_rng = np.random.default_rng(7)
TEXT = _rng.choice([0.0, 0.3, 1.0], N, p=[0.5, 0.1, 0.4])
JOINT = np.where(_rng.random(N) < 0.7, 1.0, TEXT)  # right on most items the text model misses
NEAR = TEXT.copy()
NEAR[[3, 17]] = 1.0 - NEAR[[3, 17]]  # two items flipped: no detectable difference
PRIOR = np.where(np.arange(N) % 3 == 0, 1.0, 0.0)
HALF = np.where(np.arange(N) % 2 == 0, JOINT, PRIOR)  # keeps about half of the joint model's gain


def _write(folder: Path, name: str, scores: np.ndarray, *, model: str, modalities: list[str], trainable: int,
           peft: dict | None = None) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    for seed in (0, 1, 2):  # every seed scores the same: the seed-and-item test is then a paired t-test over items
        record = make_record(name, seed, {f"{i:03d}": float(v) for i, v in enumerate(scores)}, config_hash=digest,
                             trainable=trainable, modalities=modalities)
        record["config"]["baseline"].update(model=model, peft=peft)
        record["config"]["task"]["training"] = {"epochs": 1, "lr": 0.001, "batch_size": 8, "precision": "auto"}
        record["config"]["training"]["epochs"] = 5
        write_record(folder, record, name=re.sub(r"[^a-z0-9-]", "_", name))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs")
    _write(folder, "text-bert", TEXT, model="bert-text", modalities=["text"], trainable=1000)
    _write(folder, "vilt", JOINT, model="vilt", modalities=["text", "image"], trainable=1000)
    _write(folder, "film", NEAR, model="film", modalities=["text", "image"], trainable=900)
    _write(folder, "prior", PRIOR, model="answer-prior", modalities=[], trainable=0)
    _write(folder, "vilt-lora", HALF, model="vilt", modalities=["text", "image"], trainable=50,
           peft={"method": "lora", "r": 8})
    return folder


@pytest.fixture(scope="module")
def claims(runs):
    return {c.number: c for c in build_claims(read_records([runs]).records)}


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    d = 100 * (a - b)
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean()), float(stats.ttest_rel(100 * a, 100 * b).pvalue), (d.mean() - half, d.mean() + half)


def test_joint_vs_text_matches_hand_computed_paired_tests_and_holm(claims):
    claim = claims["1"]
    rows = {r.comparison.split(" vs ")[0]: r for r in claim.rows}
    assert sorted(rows) == ["film", "vilt"]  # the PEFT run and the prior are not fully trained joint models
    vilt, film = _paired(JOINT, TEXT), _paired(NEAR, TEXT)
    contrast = 100 * (HALF - 0.9 * JOINT - 0.1 * PRIOR)
    p_peft = float(stats.ttest_1samp(contrast, 0).pvalue)
    ps = [vilt[1], film[1], p_peft]  # the page's whole family: claims 2-6 have no records here
    order = np.argsort(ps)
    adjusted, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * ps[i]))
        adjusted[i] = running
    assert holm(ps) == pytest.approx(adjusted)
    assert rows["vilt"].effect == pytest.approx(vilt[0]) and rows["vilt"].p_value == pytest.approx(vilt[1])
    assert rows["vilt"].ci == pytest.approx(vilt[2])
    assert rows["vilt"].p_holm == pytest.approx(adjusted[0]) and rows["film"].p_holm == pytest.approx(adjusted[1])
    assert rows["vilt"].verdict == SUPPORTED and rows["film"].verdict == NOT_SUPPORTED
    assert claim.verdict == SUPPORTED  # "any": the best joint model, paid for by Holm


def test_peft_share_kept_below_the_bar_is_not_supported_with_its_interval(claims):
    claim = claims["3"]
    (row,) = claim.rows
    share = (HALF.mean() - PRIOR.mean()) / (JOINT.mean() - PRIOR.mean())
    assert row.effect == pytest.approx(share)
    assert row.p_value == pytest.approx(stats.ttest_1samp(100 * (HALF - 0.9 * JOINT - 0.1 * PRIOR), 0).pvalue)
    # brute force: the shares a paired t-test of the contrast does not reject at 0.05
    grid = np.linspace(-1, 2, 30001)
    kept = [k for k in grid if stats.ttest_1samp(100 * (HALF - k * JOINT - (1 - k) * PRIOR), 0).pvalue >= 0.05]
    assert row.ci == pytest.approx((min(kept), max(kept)), abs=2e-4)
    assert "5.0%" in " ".join(row.notes)  # 50 of the full model's 1000 trainable parameters
    assert row.verdict == NOT_SUPPORTED and claim.verdict == NOT_SUPPORTED


def test_claims_without_records_say_which_are_missing_and_how_to_make_them(claims):
    for number in ("2a", "2b", "4", "5", "6"):
        assert claims[number].verdict == NOT_TESTED and claims[number].missing and claims[number].to_make
    assert "no data-efficiency (--train-fraction) records" in claims["4"].missing
    assert any("--baseline vl-minilm --baseline vl-minilm-scratch" in c for c in claims["4"].to_make)  # shipped twins
    assert "naive and the replay strategy" in claims["6"].missing


def test_replay_claim_is_welch_over_seeds_from_summaries(runs):
    naive, replay = [30.0, 32.5, 31.0], [1.0, 2.5, 0.25]
    summaries = [{"kind": "continual", "status": "ok", "sequence": "seq", "task": "vqa", "dataset": "shapes",
                  "baseline": "film", "strategy": strategy, "seed": seed, "config_hash": strategy * 2,
                  "stages": ["a", "b"], "settings": {}, "metrics": {"forgetting": value}}
                 for strategy, values in (("naive", naive), ("replay", replay)) for seed, value in enumerate(values)]
    (row,) = next(c for c in build_claims([], summaries) if c.number == "6").rows
    welch = stats.ttest_ind(naive, replay, equal_var=False)
    assert row.effect == pytest.approx(np.mean(naive) - np.mean(replay))
    assert row.p_value == pytest.approx(welch.pvalue) and row.verdict == SUPPORTED
    assert "--strategy replay" in " ".join(row.commands)


def test_tost_is_the_larger_one_sided_p():
    t975 = stats.t.ppf(0.975, 10)
    test = SeedItemTest(0.3, 0.5, 0.3 - 0.4 * t975, 0.3 + 0.4 * t975, 10.0, (0, 0), 0, (3, 3), 50)
    below, above = stats.t.sf((0.3 + 1) / 0.4, 10), stats.t.cdf((0.3 - 1) / 0.4, 10)
    assert tost_p(test, 1.0) == pytest.approx(max(below, above))
    assert tost_p(SeedItemTest(0.0, 1.0, 0.0, 0.0, float("inf"), (0, 0), 0, (3, 3), 5), 1.0) == 0.0
    assert tost_p(SeedItemTest(2.0, 0.0, 2.0, 2.0, float("inf"), (0, 0), 0, (3, 3), 5), 1.0) == 1.0


def test_contrast_of_two_is_the_seed_item_test_and_of_three_a_paired_t_without_seed_noise():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (3, 40)) + rng.normal(0, 1, (3, 1)), rng.normal(0.2, 1, (4, 40))
    two, ref = contrast_test([[a], [b]], [1, -1]), seed_item_test([a], [b])
    assert (two.delta, two.p_value, two.ci_low, two.df) == pytest.approx((ref.delta, ref.p_value, ref.ci_low, ref.df))
    x, y, z = (np.tile(rng.normal(m, 1, 40), (3, 1)) for m in (1.0, 0.5, 0.0))
    three = contrast_test([[x], [y], [z]], [1, -0.7, -0.3])
    assert three.p_value == pytest.approx(stats.ttest_1samp(x[0] - 0.7 * y[0] - 0.3 * z[0], 0).pvalue)


def test_run_command_is_rebuilt_from_the_record_config(runs):
    record = read_records([runs]).records[0]
    record = {**record, "config": json.loads(json.dumps(record["config"]))}
    record["config"]["task"]["train_subset"] = {"fraction": 0.1, "k_shot": None, "seed": None}
    record["_path"] = "out/eff/fraction-0.1/vqa/shapes/vilt/seed-0.json"
    line = run_command([record])
    assert "--epochs 5" in line and "--train-fraction 0.1" in line and line.endswith("--results-dir out/eff")
    assert "--lr" not in line  # equal to the recorded default


def _page(records, folders) -> ClaimsPage:
    return ClaimsPage(build_claims(records), record_sets(folders, records), "vlbench claims runs", Options())


def test_hostile_names_are_escaped_in_markdown_and_html(runs, tmp_path):
    folder = tmp_path / "hostile"
    _write(folder, "text-bert", TEXT, model="bert-text", modalities=["text"], trainable=1000)
    _write(folder, HOSTILE, JOINT, model="vilt", modalities=["text", "image"], trainable=1000)
    page = _page(read_records([folder]).records, [str(folder)])
    html = html_section(page)
    assert "<script>" not in html and "&lt;script&gt;" in html
    markdown = markdown_page(page)
    # code blocks show their text literally; each fence is longer than the name's run of five backticks
    blocks = re.findall(r"^(`{3,})sh\n(.*?)\n\1$", markdown, flags=re.M | re.S)
    assert blocks and all(len(fence) == 6 for fence, body in blocks if "alert" in body)
    prose = re.sub(r"^(`{3,})sh\n.*?\n\1$", "", markdown, flags=re.M | re.S)
    assert "<script>" not in prose and "&lt;script&gt;" in prose
    row = next(line for line in prose.splitlines() if line.startswith("| ") and "alert" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # seven cells: the name's pipe is escaped


def test_markdown_is_byte_stable_whatever_the_record_order(runs):
    records = read_records([runs]).records
    first = markdown_page(_page(records, [str(runs)]))
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert markdown_page(_page(shuffled, [str(runs)])) == first


def test_cli_writes_the_page_and_the_leaderboard_section(runs, tmp_path, capsys):
    out = tmp_path / "claims.md"
    assert main(["claims", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"`vlbench claims {runs} --out {out}`" in text and "| 1 | Joint training beats text-only on VQA | **supported** |" in text
    again = tmp_path / "again.md"
    main(["claims", str(runs), "--out", str(again)])
    assert again.read_text() == text.replace(str(out), str(again))
    assert main(["claims", str(tmp_path / "missing")]) == 2
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'id="claims"' in index and "Joint training beats text-only on VQA" in index


def _resolved(task: str, baseline: str, overrides: list[str], training: dict) -> dict:
    from vlbench.plan import RunRequest, resolve_runs
    from vlbench.specs import load_baseline_spec, load_task_spec

    request = RunRequest(task=load_task_spec(task), baselines=[load_baseline_spec(baseline)], results_dir=Path("runs"),
                         overrides=overrides, training_overrides=training)
    return resolve_runs(request)[0].model_dump(mode="json")


@pytest.mark.parametrize("task, baseline, sets, training", [
    # the SmolLM2 rows' published command: a smaller validation split, a prompt-reading model
    ("vmt-masked", "llava-smollm", ["task.data.val_images=100", "task.options.beam_size=2"], {}),
    # task options the shipped file leaves at their default, a model setting it does not name, a training flag
    ("vqa", "vilt", ["task.options.min_answer_count=2", "task.options.max_text_length=20", "baseline.config.hidden_size=64",
                     "baseline.config.attention_dropout=0.2", "training.patience=0"], {"epochs": 5}),
    ("vqa", "prompted-smollm", ["baseline.config.shots=4", "task.data.val_images=100"], {}),
    # a PEFT setting the shipped file names (the block is completed by the peft package)
    ("vqa", "vilt-lora", ["baseline.peft.r=4", 'baseline.peft.target_modules=["query", "key", "value"]'], {}),
    # measurements the record holds, asked for with the switches a user types (the published VQA leaderboard's)
    ("vqa", "film", ["training.patience=0"], {"epochs": 5, "emap_items": 500, "check_eval_invariance": True}),
    ("vqa", "vilt", [], {"emap_items": 40, "keep_model": True}),
])
def test_the_rebuilt_command_resolves_to_the_recorded_config(task, baseline, sets, training):
    import shlex

    recorded = _resolved(task, baseline, sets, training)
    record = {"task": task, "baseline": baseline, "seed": 0, "config": recorded}
    words = shlex.split(run_command([record]))
    overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    flags = {"--epochs": "epochs", "--lr": "lr", "--batch-size": "batch_size", "--max-steps": "max_steps",
             "--min-steps": "min_steps", "--precision": "precision"}
    again = {flags[word]: json.loads(words[i + 1]) for i, word in enumerate(words) if word in flags}
    switches = {"--emap": ("emap_items", DEFAULT_EMAP_ITEMS), "--check-eval-invariance": ("check_eval_invariance", True),
                "--keep-model": ("keep_model", True)}
    again.update(switches[word] for word in words if word in switches)
    again.update({"emap_items": int(words[i + 1]) for i, word in enumerate(words) if word == "--emap-items"})
    assert not any(text.startswith(("training.emap", "training.check", "training.keep")) for text in overrides)
    assert _resolved(task, baseline, overrides, again) == recorded  # the command makes the same run
    assert all(text in overrides for text in sets if not text.startswith("training."))
    assert _resolved(task, baseline, [], {}) != recorded  # and the settings did change it


def test_a_continual_command_sets_measurements_it_has_no_switch_for():
    from vlbench.results.claims.commands import continual_command

    stage = {"config": {"task": {"training": {"epochs": 1, "check_eval_invariance": None}},
                        "training": {"epochs": 2, "check_eval_invariance": True}}}
    summary = {"sequence": "shapes-families", "baseline": "film", "strategy": "naive", "seed": 0, "settings": {}}
    words = continual_command([summary], [stage]).split()
    assert "--check-eval-invariance" not in words  # `vlbench continual` has no such option
    assert "training.check_eval_invariance=true" in words and words[words.index("--epochs") + 1] == "2"
