"""Aggregation never mixes configs: rows per config hash, failed rows, versions footnote, duplicates, the hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.results_fixtures import make_record, write_record
from vlbench.cli.main import main
from vlbench.results.aggregate import aggregate
from vlbench.results.records import read_records
from vlbench.results.table import legend, render
from vlbench.specs import config_hash, load_baseline_spec, load_task_spec, resolve_run_config

ITEMS = {str(i): float(i % 2) for i in range(10)}  # accuracy 50


def _rows(table, metric="accuracy"):
    return [r for r in table.rows if r["metric"] == metric]


def test_two_configs_of_one_baseline_are_two_rows_with_their_difference(tmp_path, capsys):
    for seed in (0, 1, 2):
        write_record(tmp_path, make_record("vilt", seed, ITEMS, config_hash="a" * 16, lr=0.001))
    write_record(tmp_path, make_record("vilt", 0, {k: 1.0 for k in ITEMS}, config_hash="b" * 16, lr=0.05))
    rows = _rows(aggregate(read_records([tmp_path]).records))
    assert len(rows) == 2
    by_n = {r["n"]: r for r in rows}
    assert by_n[3]["mean"] == pytest.approx(50.0) and by_n[1]["mean"] == pytest.approx(100.0)
    assert by_n[3]["config"] == "training.lr=0.001" and by_n[1]["config"] == "training.lr=0.05"
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "training.lr=0.05" in md and "training.lr=0.001" in md
    assert "1 (n&lt;3)" in md  # a single seed says so


def test_failed_runs_are_failed_rows(tmp_path, capsys):
    write_record(tmp_path, make_record("vilt", 0, ITEMS))
    write_record(tmp_path, make_record("film", 0, status="failed", config_hash="c" * 16))
    write_record(tmp_path, make_record("vilt", 1, status="failed"))
    rows = {r["baseline"]: r for r in aggregate(read_records([tmp_path]).records).rows}
    assert rows["film"]["status"] == "failed" and rows["film"]["n"] == 0
    assert "nan at step 3" in rows["film"]["failure"]
    assert rows["vilt"]["status"] == "partial" and rows["vilt"]["failed_seeds"] == [1] and rows["vilt"]["n"] == 1
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "failed: loss became nan at step 3" in md and "1 (n&lt;3) +1 failed" in md


def test_mixed_versions_are_footnoted(tmp_path, capsys):
    write_record(tmp_path, make_record("vilt", 0, ITEMS))
    write_record(tmp_path, make_record("vilt", 1, ITEMS, versions={"vlbench": "0.2.0", "torch": "2.13.0"}))
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "different package/code versions" in out and "torch 2.13.0" in out and "torch 2.14.1" in out
    write_record(tmp_path, make_record("vilt", 1, ITEMS))
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    assert "different package/code versions" not in capsys.readouterr().out


def test_folders_merge_and_duplicates_count_once(tmp_path, capsys):
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    write_record(a, make_record("vilt", 0, ITEMS))
    write_record(b, make_record("vilt", 0, ITEMS))  # the same run copied to a second folder
    write_record(b, make_record("vilt", 1, ITEMS))
    found = read_records([a, b])
    assert len(found.records) == 2 and len(found.duplicates) == 1
    assert main(["table", str(a), str(b), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[0]["n"] == 2 and rows[0]["seeds"] == [0, 1]
    assert "duplicate run" in captured.err


def test_honest_columns_cpu_has_no_memory_column_gpu_does(tmp_path, capsys):
    write_record(tmp_path, make_record("vilt", 0, ITEMS))
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "GPU peak MB" not in md and "train s" in md and "eval s" in md
    write_record(tmp_path, make_record("vilt", 1, ITEMS, gpu_bytes=300 * 2**20))
    rows = _rows(aggregate(read_records([tmp_path]).records))
    assert rows[0]["gpu_memory_mb"] == pytest.approx(300.0)
    assert rows[0]["train_seconds"] == 6.0 and rows[0]["eval_seconds"] == 3.0


def test_delta_p_value_and_image_reliance(tmp_path):
    good = {str(i): 1.0 if i < 80 else 0.0 for i in range(100)}
    bad = {str(i): 1.0 if i < 40 else 0.0 for i in range(100)}
    for seed in (0, 1, 2):
        write_record(tmp_path, make_record("vilt", seed, good, ablation=(45.0, 50.0)))
        write_record(tmp_path, make_record("text-bert", seed, bad, config_hash="d" * 16))
    rows = {r["baseline"]: r for r in aggregate(read_records([tmp_path]).records, rounds=2000).rows}
    vilt = rows["vilt"]
    assert vilt["delta_vs_reference"] == pytest.approx(40.0)
    assert vilt["p_value"] < 0.01 and vilt["delta_ci_low"] > 0
    assert vilt["image_reliance_blank"] == pytest.approx(35.0) and vilt["image_reliance_shuffled"] == pytest.approx(30.0)
    assert rows["text-bert"]["delta_vs_reference"] is None and rows["text-bert"]["p_value"] is None
    md = render(aggregate(read_records([tmp_path]).records, rounds=2000), "md")
    assert "+40.00\\*\\*" in md and "&lt;0.001" in md  # ** marks p < 0.01 (escaped for Markdown)


def test_reference_option_measures_every_row_from_the_named_baseline(tmp_path, capsys):
    scores = {"text-bert": 40, "text-smollm": 60, "vilt": 80}  # the task's reference is text-bert
    for baseline, right in scores.items():
        for seed in (0, 1, 2):
            write_record(tmp_path, make_record(baseline, seed, {str(i): float(i < right) for i in range(100)},
                                               config_hash=hashlib.sha256(baseline.encode()).hexdigest()[:16]))
    rows = {r["baseline"]: r for r in aggregate(read_records([tmp_path]).records, rounds=500,
                                                 reference="text-smollm").rows}
    assert rows["vilt"]["delta_vs_reference"] == pytest.approx(20.0) and rows["vilt"]["reference"] == "text-smollm"
    assert rows["text-bert"]["delta_vs_reference"] == pytest.approx(-20.0)
    assert rows["text-smollm"]["delta_vs_reference"] is None
    assert main(["table", str(tmp_path), "--format", "md", "--reference", "text-smollm"]) == 0
    assert "vs text-smollm" in capsys.readouterr().out
    assert main(["table", str(tmp_path), "--reference", "text-smolm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --reference 'text-smolm': no record") and "text-smollm" in err


def test_corpus_metric_is_marked_not_tested(tmp_path):
    for name, items in (("vilt", {"1": 10.0, "2": 30.0}), ("text-bert", {"1": 5.0, "2": 5.0})):
        record = make_record(name, 0, {"1": 1.0, "2": 0.0}, config_hash="e" * 16 if name == "vilt" else "f" * 16)
        record["test"]["metrics"] = {"BLEU": 42.0}  # not the mean of the per-sentence scores
        record["primary_metric"] = "BLEU"
        record["per_example"]["test"] = items
        write_record(tmp_path, record)
    row = next(r for r in aggregate(read_records([tmp_path]).records).rows if r["baseline"] == "vilt")
    assert row["p_value"] is None and "corpus-level" in row["test"]
    assert row["delta_vs_reference"] == 0.0


def test_config_hash_ignores_cosmetics_and_hashes_the_precision_used():
    task, base = load_task_spec("vqa"), load_baseline_spec("vilt")
    plain = resolve_run_config(task, base)
    cosmetic = resolve_run_config(
        task.model_copy(update={"description": "other words", "reference_baseline": "prior"}),
        base.model_copy(update={"description": "x", "tasks": ["vqa", "captioning"], "family": "renamed"}),
        overrides=["training.seeds=[1, 2, 3]"])
    assert config_hash(plain) == config_hash(cosmetic)
    assert config_hash(plain, {"precision": "fp32"}) != config_hash(plain, {"precision": "bf16"})
    auto = resolve_run_config(task, base, training_overrides={"precision": "auto"})
    fp32 = resolve_run_config(task, base, training_overrides={"precision": "fp32"})
    # "auto" that resolved to fp32 on this device is the same run as an explicit fp32
    assert config_hash(auto, {"precision": "fp32"}) == config_hash(fp32, {"precision": "fp32"})
    assert config_hash(resolve_run_config(task, base, overrides=["training.lr=0.05"])) != config_hash(plain)


def test_precision_used_and_many_differences_are_named(tmp_path, capsys):
    bf16 = make_record("vilt", 0, ITEMS, config_hash="1" * 16)
    bf16["training"]["precision"] = "bf16"  # "auto" in the config, bf16 on the machine that ran it
    write_record(tmp_path, bf16)
    write_record(tmp_path, make_record("vilt", 0, ITEMS, config_hash="2" * 16), name="vilt-fp32")
    rows = _rows(aggregate(read_records([tmp_path]).records))
    assert sorted(r["config"] for r in rows) == ["training.precision=bf16", "training.precision=fp32"]
    other = make_record("vilt", 0, ITEMS, config_hash="3" * 16, lr=0.3)
    other["config"]["training"].update(epochs=9, batch_size=4)
    other["config"]["baseline"]["config"]["hidden_size"] = 8
    write_record(tmp_path, other, name="vilt-other")
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    assert "(+2 more)" in capsys.readouterr().out  # five differing fields: three named, the rest counted
    rows = _rows(aggregate(read_records([tmp_path]).records))
    assert any(len(r["config_fields"]) == 5 for r in rows)


def _vmt_record(folder, baseline, seed, hyps, refs, config_hash):
    from sacrebleu.metrics import BLEU, CHRF

    record = make_record(baseline, seed, {"1": 1.0}, config_hash=config_hash)
    record["primary_metric"] = "BLEU"
    record["test"]["metrics"] = {"BLEU": BLEU().corpus_score(hyps, [refs]).score,
                                 "chrF": CHRF().corpus_score(hyps, [refs]).score}
    record["per_example"]["test"] = {str(100 + i): BLEU(effective_order=True).sentence_score(h, [r]).score
                                     for i, (h, r) in enumerate(zip(hyps, refs))}
    record["predictions_file"] = f"seed-{seed}.predictions.txt"
    path = write_record(folder, record, name=baseline)
    (path.parent / record["predictions_file"]).write_text("".join(h + "\n" for h in hyps))
    (path.parent / f"seed-{seed}.predictions.ref.txt").write_text("".join(r + "\n" for r in refs))
    return record


def test_corpus_bleu_is_tested_by_recomputing_it_on_resampled_sentences(tmp_path):
    import random

    rnd = random.Random(0)
    words = "a red blue green circle square triangle left of right above below big small the".split()
    refs = [" ".join(rnd.choice(words) for _ in range(8)) for _ in range(60)]
    good = [r if i % 4 else " ".join(r.split()[:5]) for i, r in enumerate(refs)]  # mostly right
    bad = [" ".join(rnd.choice(words) for _ in range(8)) for _ in refs]  # unrelated words
    for seed in (0, 1):
        _vmt_record(tmp_path, "vilt", seed, good, refs, "1" * 16)
        _vmt_record(tmp_path, "text-bert", seed, bad, refs, "2" * 16)
    rows = {(r["baseline"], r["metric"]): r for r in aggregate(read_records([tmp_path]).records).rows}
    vilt, bert = rows[("vilt", "BLEU")], rows[("text-bert", "BLEU")]
    assert vilt["delta_vs_reference"] == pytest.approx(vilt["mean"] - bert["mean"])
    assert vilt["p_value"] < 0.01 and vilt["delta_ci_low"] > 0 and "recomputed" in vilt["test"]
    assert vilt["p_value_items"] < 0.01
    # the same outputs on both sides: no difference, nothing significant
    same = tmp_path / "same"
    for seed in (0, 1):
        _vmt_record(same, "vilt", seed, good, refs, "3" * 16)
        _vmt_record(same, "text-bert", seed, good, refs, "4" * 16)
    row = next(r for r in aggregate(read_records([same]).records).rows if r["baseline"] == "vilt")
    assert row["delta_vs_reference"] == 0.0 and row["p_value"] == 1.0 and row["p_value_items"] == 1.0
    # one seed each: the seed variance is unknown, so only the items-only p exists
    one = tmp_path / "one"
    _vmt_record(one, "vilt", 0, good, refs, "3" * 16)
    _vmt_record(one, "text-bert", 0, bad, refs, "4" * 16)
    table = aggregate(read_records([one]).records)
    row = next(r for r in table.rows if r["baseline"] == "vilt" and r["metric"] == "BLEU")
    assert row["p_value"] is None and row["p_value_items"] < 0.01 and "needs at least 2 seeds" in row["test"]
    assert any("p (seeds+items) not computed" in line for line in legend(table))
