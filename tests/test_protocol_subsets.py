"""Train subsets: nested image-level fractions, k-shot draws, the recorded draw, and the efficiency command."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.protocols.efficiency import Curve, CurvePoint, matching_fraction
from vlbench.data.subsets import apply_train_subset, select_rows
from vlbench.specs import TaskSpec, TrainSubset, config_hash, load_baseline_spec, load_task_spec, resolve_run_config

TINY_OPTIONS = {"train_images": 48, "val_images": 12, "test_images": 12}


def _expected_images(image_ids, fraction, seed):
    """Independent reference: first ceil(f*N) of a default_rng(seed) permutation of the sorted distinct ids."""
    distinct = sorted(set(image_ids))
    perm = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i] for i in perm[: math.ceil(fraction * len(distinct))]}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from vlbench.runner import load_dataset

    return load_dataset("shapes", TINY_OPTIONS, tmp_path_factory.mktemp("cache"), quiet=True)


def _task(**subset):
    spec = load_task_spec("vqa").model_dump()
    spec["data"] = TINY_OPTIONS
    spec["train_subset"] = subset or None
    return TaskSpec.model_validate(spec)


def test_fractions_are_nested_image_level_and_match_the_reference_draw(shapes):
    train = shapes.split("vqa", "train")
    all_ids = [int(i) for i in train["image_id"]]
    previous: set[int] = set()
    for fraction in (0.1, 0.25, 0.5, 1.0):
        keep, facts = select_rows(all_ids, TrainSubset(fraction=fraction), seed=3)
        images = {all_ids[r] for r in keep}
        assert images == _expected_images(all_ids, fraction, 3)
        assert previous <= images  # nested: the smaller subset lies inside the larger one
        # image level: every question of a chosen image is kept, none of an unchosen one
        assert sorted(keep) == [r for r, i in enumerate(all_ids) if i in images]
        assert facts["images"] == len(images) == math.ceil(fraction * len(set(all_ids)))
        assert facts["examples"] == len(keep) and facts["seed"] == 3
        assert facts["image_ids_sha256"] == hashlib.sha256(",".join(map(str, sorted(images))).encode()).hexdigest()
        previous = images
    assert len(previous) == len(set(all_ids))
    other, _ = select_rows(all_ids, TrainSubset(fraction=0.25), seed=4)
    assert {all_ids[r] for r in other} == _expected_images(all_ids, 0.25, 4)


def test_k_shot_keeps_k_examples_per_answer_nested_in_k(shapes):
    train = shapes.split("vqa", "train")
    ids = [int(i) for i in train["image_id"]]
    answers = list(train["multiple_choice_answer"])
    totals = {a: answers.count(a) for a in set(answers)}
    previous: set[int] = set()
    for k in (1, 2, 4):
        keep, facts = select_rows(ids, TrainSubset(k_shot=k), seed=0, answers=answers)
        counts = {a: sum(1 for r in keep if answers[r] == a) for a in totals}
        assert all(counts[a] == min(k, totals[a]) for a in totals)
        assert previous <= set(keep) and facts["per"] == "answer"
        previous = set(keep)
    keep, facts = select_rows(ids, TrainSubset(k_shot=3), seed=0)  # no answer column: k images
    assert facts["images"] == 3 and len({ids[r] for r in keep}) == 3


def test_view_narrows_only_the_training_split_and_records_the_draw(shapes):
    view = apply_train_subset(shapes, _task(fraction=0.25), run_seed=7)
    assert len(view.split("vqa", "val")) == len(shapes.split("vqa", "val"))
    assert len(view.split("vqa", "test")) == len(shapes.split("vqa", "test"))
    train = view.split("vqa", "train")
    full_ids = [int(i) for i in shapes.split("vqa", "train")["image_id"]]
    assert set(int(i) for i in train["image_id"]) == _expected_images(full_ids, 0.25, 7)
    draw = view.info["train_subset"]["vqa/train"]
    assert draw["seed"] == 7 and draw["examples"] == len(train) and draw["examples_total"] == len(full_ids)
    assert "train_subset" not in shapes.info  # the cached dataset itself is untouched
    fixed = apply_train_subset(shapes, _task(fraction=0.25, seed=1), run_seed=7)
    fixed.split("vqa", "train")
    assert fixed.info["train_subset"]["vqa/train"]["seed"] == 1


def test_subset_is_part_of_the_config_hash_and_absent_subset_keeps_old_hashes():
    base = load_task_spec("vqa")
    baseline = load_baseline_spec("text-bert")
    plain = resolve_run_config(base, baseline)
    half = resolve_run_config(base, baseline, overrides=["task.train_subset={fraction: 0.5}"])
    full = resolve_run_config(base, baseline, overrides=["task.train_subset={fraction: 1.0}"])
    assert len({config_hash(plain), config_hash(half), config_hash(full)}) == 3
    # a config without a subset, and without the prompt a non-prompted baseline never reads, hashes like one
    # whose spec never had those fields
    bare = plain.model_copy(update={"task": plain.task.model_copy(update={"prompt": None})})
    assert config_hash(plain) == config_hash(bare)
    prompted = plain.model_copy(update={"baseline": plain.baseline.model_copy(update={"model": "prompted"})})
    prompted_bare = bare.model_copy(update={"baseline": bare.baseline.model_copy(update={"model": "prompted"})})

    assert config_hash(prompted) != config_hash(prompted_bare)
    with pytest.raises(Exception):
        TrainSubset(fraction=0.5, k_shot=2)


def test_matching_fraction_is_the_first_fraction_at_or_above_the_target():
    def point(f, m):
        return CurvePoint(f, 100 * f, 10 * f, m, None, 1, [0])

    curve = Curve("vilt", "", [point(0.01, 40.0), point(0.1, 50.0), point(0.3, 49.0), point(1.0, 60.0)])
    assert matching_fraction(curve, 45.0).fraction == 0.1
    assert matching_fraction(curve, 50.0).fraction == 0.1
    assert matching_fraction(curve, 61.0) is None


def test_a_reference_that_gains_nothing_from_labels_is_said_to_say_little():
    from scipy import stats

    from vlbench.protocols.efficiency import render_efficiency

    def point(f, m, sd):
        return CurvePoint(f, 29405 * f, 6000 * f, m, sd, 3, [0, 1, 2])

    # the published text-minilm-ft curve: at the question-only level from 1% of the data on
    flat = Curve("text-minilm-ft", "", [point(0.01, 45.01, 0.17), point(1.0, 45.04, 0.45)])
    rising = Curve("text-minilm-ft", "", [point(0.01, 40.0, 0.5), point(1.0, 45.04, 0.45)])
    joint = Curve("vl-minilm", "", [point(0.01, 46.98, 1.87), point(1.0, 55.05, 2.12)])
    _, notes = render_efficiency([flat, joint], "accuracy", "text-minilm-ft")
    p = stats.ttest_ind_from_stats(45.04, 0.45, 3, 45.01, 0.17, 3, equal_var=False, alternative="greater").pvalue
    assert notes[0].startswith("text-minilm-ft gains nothing detectable from more labels here (45.01 at fraction 0.01")
    assert f"one-sided p = {p:.2f}" in notes[0] and "vl-minilm: matches" in notes[1]
    _, notes = render_efficiency([rising, joint], "accuracy", "text-minilm-ft")
    assert not any("gains nothing" in n for n in notes) and notes[0].startswith("vl-minilm: matches")
    worse = Curve("text-minilm-ft", "", [point(0.01, 46.0, 0.1), point(1.0, 45.04, 0.45)])
    assert "no higher with all of them" in render_efficiency([worse, joint], "accuracy", "text-minilm-ft")[1][0]


def test_k_shot_table_puts_prompted_baselines_at_k_in_context_beside_fine_tuning(tmp_path):
    from vlbench.protocols.efficiency import curves_from_records, plot_curves, render_efficiency

    def record(baseline, seed, value, k_shot=None, shots=None):
        model = "prompted" if shots is not None else "vilt"
        subset = {"k_shot": k_shot} if k_shot is not None else None
        draws = {"vqa/train": {"examples": 20 * k_shot, "images": 15 * k_shot}} if k_shot is not None else {}
        return {"task": "vqa", "status": "ok", "_path": f"/r/{baseline}/{k_shot}/{shots}/seed-{seed}.json",
                "baseline": baseline, "seed": seed, "primary_metric": "accuracy", "config_hash": f"{baseline}{k_shot}{shots}",
                "config": {"task": {"train_subset": subset},
                           "baseline": {"model": model, "family": model, "config": {"shots": shots} if shots is not None else {}}},
                "data": {"info": {"train_subset": draws}}, "test": {"metrics": {"accuracy": value}}}

    records = [record("vilt", s, 30.0 + k + s, k_shot=k) for k in (1, 4) for s in (0, 1)]
    records += [record("prompted-prefix", s, 40.0 + k - s, shots=k) for k in (0, 1, 4) for s in (0, 1)]
    records.append(record("prior", 0, 20.0))  # neither a subset nor prompted: not in a k-shot table
    curves, metric = curves_from_records(records, "vqa", rule="k_shot")
    by_name = {c.baseline: c for c in curves}
    assert set(by_name) == {"vilt", "prompted-prefix"} and metric == "accuracy"
    assert by_name["prompted-prefix"].regime == "prompted" and by_name["vilt"].regime == "fine-tuned"
    assert [(p.fraction, p.examples, p.mean) for p in by_name["prompted-prefix"].points] == [
        (0.0, 0.0, 39.5), (1.0, 1.0, 40.5), (4.0, 4.0, 43.5)]
    assert [(p.fraction, p.examples, p.mean) for p in by_name["vilt"].points] == [(1.0, 20.0, 31.5), (4.0, 80.0, 34.5)]
    table, notes = render_efficiency(curves, metric, None, rule="k_shot")
    assert "| prompted-prefix | k in the prompt, no training | 0 | 0 | 0 | 39.50 ± 0.71 | 2 |" in table
    assert "| vilt | k per answer, fine-tuned | 4 | 60 | 80 | 34.50 ± 0.71 | 2 |" in table
    assert notes and "prompted rows" in notes[0]
    plot = plot_curves(curves, metric, None, tmp_path / "k.png", "k", by_k=True)
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_train_fraction_cli_writes_nested_records_and_the_efficiency_plot(tmp_path, capsys):
    results = tmp_path / "runs"
    args = ["run", "--task", "vqa", "--baseline", "prior", "--baseline", "text-bert", "--train-fraction", "0.5,1",
            "--seeds", "0,1", "--max-steps", "1", "--quiet", "--results-dir", str(results), *TINY_DATA,
            "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
            "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| text-bert | 0.5 |" in out and "| prior | 1 |" in out
    draws = {}
    for fraction in ("0.5", "1"):
        for seed in (0, 1):
            record = json.loads((results / f"fraction-{fraction}" / "vqa" / "shapes" / "text-bert" / f"seed-{seed}.json").read_text())
            assert record["config"]["task"]["train_subset"]["fraction"] == float(fraction)
            draw = record["data"]["info"]["train_subset"]["vqa/train"]
            assert draw["seed"] == seed and record["data"]["sizes"]["train"] == draw["examples"]
            draws[(fraction, seed)] = draw
    assert draws[("0.5", 0)]["image_ids_sha256"] != draws[("0.5", 1)]["image_ids_sha256"]
    assert draws[("1", 0)]["image_ids_sha256"] == draws[("1", 1)]["image_ids_sha256"]
    assert (results / "efficiency-vqa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot = tmp_path / "curve.png"
    assert main(["efficiency", str(results), "--task", "vqa", "--plot", str(plot)]) == 0
    assert plot.is_file() and "prior" in capsys.readouterr().out
    # a rerun with another config keeps the earlier records aside; the curves use only the current ones
    assert main([*args, "--lr", "0.002"]) == 0
    assert list((results / "fraction-0.5" / "vqa" / "shapes" / "text-bert").glob("seed-0.cfg-*.json"))
    assert main(["efficiency", str(results), "--task", "vqa"]) == 0


@pytest.mark.parametrize("bad", ["0,0.5", "1.5", "a,b", "0.5,0.5"])
def test_bad_train_fraction_is_one_error_line(bad, tmp_path, capsys):
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--train-fraction", bad, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --train-fraction")


def test_k_shot_cli_runs_one_folder_per_k_with_k_examples_per_answer(tmp_path, capsys):
    results = tmp_path / "runs"
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--k-shot", "1,2", "--seeds", "0", "--quiet",
                 "--results-dir", str(results), *TINY_DATA]) == 0
    assert "k per answer, fine-tuned" in capsys.readouterr().out
    for k in (1, 2):
        record = json.loads((results / f"k-shot-{k}" / "vqa" / "shapes" / "prior" / "seed-0.json").read_text())
        draw = record["data"]["info"]["train_subset"]["vqa/train"]
        assert draw["k_shot"] == k and draw["per"] == "answer" and record["data"]["sizes"]["train"] == draw["examples"]
    assert (results / "k-shot-vqa.png").is_file()
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--k-shot", "1", "--train-fraction", "1",
                 "--results-dir", str(results)]) == 2


@pytest.mark.parametrize("task_name", ["captioning", "vmt", "retrieval"])
def test_every_task_type_trains_on_the_subset_and_scores_the_whole_splits(task_name, tmp_path):
    from vlbench.registry import TASK_TYPES
    from vlbench.runner import load_dataset

    spec = load_task_spec(task_name)
    spec = spec.model_copy(update={"data": {**spec.data, **TINY_OPTIONS}})
    dataset = load_dataset(spec.dataset, spec.data, tmp_path, quiet=True)
    full = TASK_TYPES.get(spec.type)(spec, dataset)
    part = TASK_TYPES.get(spec.type)(spec, apply_train_subset(dataset, spec.model_copy(
        update={"train_subset": TrainSubset(fraction=0.25)}), run_seed=0))
    assert 0 < part.num_examples("train") < full.num_examples("train")
    for role in ("validation", "test"):
        assert part.num_examples(role) == full.num_examples(role)
