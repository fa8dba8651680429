"""A few steps of ``vlbench run`` on each dataset kind (generic task specs), the build lock, ``data verify``, VQA vocabulary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests import dataset_fixtures as fx
from vlbench.cli.main import main

TINY = ["--max-steps", "1", "--quiet", "--set", "task.options.image_size=32"]
SMALL_MODEL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
               "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("kinds")
    return {"vqa": fx.make_vqav2(base / "vqa"), "coco": fx.make_coco_karpathy(base / "coco"),
            "f30k": fx.make_flickr30k(base / "f30k"), "m30k": fx.make_multi30k(base / "m30k"), "hf": fx.make_hf_vqa(base / "hf")}


@pytest.mark.parametrize("kind", ["vqav2", "coco-karpathy", "flickr30k", "multi30k", "hf"])
def test_few_steps_on_each_dataset_kind(kind, data, tmp_path):
    runs = {
        "vqav2": ["--task", "vqa", "--dataset", f"vqav2:{data['vqa']}", "--baseline", "vilt", *SMALL_MODEL],
        "coco-karpathy": ["--task", "captioning", "--dataset", f"coco-karpathy:{data['coco']}", "--baseline", "captioner-vilt",
                          *SMALL_MODEL, "--set", "task.options.beam_size=1"],
        "flickr30k": ["--task", "retrieval", "--dataset", f"flickr30k:{data['f30k']}", "--baseline", "retrieval-dual"],
        "multi30k": ["--task", "vmt", "--dataset", f"multi30k:{data['m30k']}", "--baseline", "mmt-vilt", *SMALL_MODEL,
                     "--set", "task.options.beam_size=1"],
        "hf": ["--task", "vqa", "--dataset", f"hf:{data['hf']}", "--baseline", "vilt", *SMALL_MODEL,
               "--set", "data.columns={image: img, image_id: img_id, question: q, answers: ans}",
               "--set", "data.splits={train: train, val: validation, test: test}"],
    }
    assert main(["run", *runs[kind], "--results-dir", str(tmp_path), *TINY]) == 0
    (record_file,) = tmp_path.rglob("seed-0.json")
    record = json.loads(record_file.read_text())
    assert record["data"]["name"] == kind and record["data"]["sizes"]["test"] > 0
    assert record["config"]["task"]["data"].get("train_images") is None, "the spec's shapes options stay out"
    skipped = record["data"]["info"]["skipped_images"]
    assert skipped["count"] == (1 if kind == "vqav2" else 0)
    if kind == "vqav2":
        assert "COCO_train2014_000000000003.jpg" in skipped["first"][0]


def test_second_process_waits_for_the_build_and_reuses_it(tmp_path):
    script = (
        "import sys, vlbench.data.shapes.build as b\n"
        "real = b.generate_shapes\n"
        "def counting(*a, **k):\n"
        "    open(sys.argv[2], 'a').write('built\\n')\n"
        "    return real(*a, **k)\n"
        "b.generate_shapes = counting\n"
        "ds = b.build_shapes(None, {'train_images': 300, 'val_images': 20, 'test_images': 20}, sys.argv[1], quiet=True)\n"
        "print(ds.fingerprint)\n"
    )
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cache"), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().count("built") == 1, "exactly one process generated the data"
    assert outs[0][0].strip() == outs[1][0].strip() != ""


def test_data_verify_reports_a_changed_cache(data, tmp_path, capsys):
    from vlbench.registry import DATASETS

    ds = DATASETS.get("flickr30k")(str(data["f30k"]), {}, tmp_path, quiet=True)
    assert main(["data", "verify", "--cache-dir", str(tmp_path)]) == 0
    assert "1 cache folder(s)" in capsys.readouterr().out
    info = tmp_path / "flickr30k" / ds.fingerprint / "info.json"
    text = info.read_text()
    info.write_text(text.replace("flickr30k", "flickr31k", 1))
    assert main(["data", "verify", "--cache-dir", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "FAILED" in out.out and "info.json" in out.out


def _vqa_task(rows_by_split, options):
    from datasets import Dataset, DatasetDict

    from vlbench.data.base import ArrayImageStore, VLDataset
    from vlbench.data.vqa_format import VQA_FEATURES
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    tables = {}
    for split, rows in rows_by_split.items():
        cols = {k: [] for k in VQA_FEATURES}
        for k, (answers, mc) in enumerate(rows):
            for key, value in (("question_id", k + 100 * len(tables)), ("image_id", 0), ("question", "q?"),
                               ("question_type", "what"), ("answer_type", "other"), ("answers", answers),
                               ("answer_confidence", ["yes"] * len(answers)), ("multiple_choice_answer", mc)):
                cols[key].append(value)
        tables[split] = Dataset.from_dict(cols, features=VQA_FEATURES)
    import numpy as np

    ds = VLDataset("t", "f", ArrayImageStore(np.zeros((1, 4, 4, 3), np.uint8), [0]), {"vqa": DatasetDict(tables)})
    spec = load_task_spec("vqa").model_copy(update={"options": options})
    return VQATask(spec, ds)


def test_answer_vocabulary_counting_modes():
    # question 1: majority "cat" (7 humans) + "dog" (3); question 2: majority "dog" (10)
    train = [(["cat"] * 7 + ["dog"] * 3, "cat"), (["dog"] * 10, "dog")]
    val = [(["cat"] * 10, "cat"), (["bird"] * 10, "bird")]
    splits = {"train": train, "val": val, "test": val}
    human = _vqa_task(splits, {"min_answer_count": 7})
    assert human.answers == ["cat", "dog"]  # cat 7, dog 13 human answers
    # majority counting: one count per question (cat 1, dog 1), so nothing reaches 2
    from vlbench.errors import DataError

    with pytest.raises(DataError, match="min_answer_count"):
        _vqa_task(splits, {"min_answer_count": 2, "answer_count": "majority"})


def test_majority_counting_over_named_splits_matches_hand_count():
    train = [(["cat"] * 10, "cat"), (["dog"] * 10, "dog"), (["cat"] * 10, "cat")]
    val = [(["cat"] * 10, "cat"), (["bird"] * 10, "bird")]
    counts = Counter(mc for _, mc in train + val)  # cat 3, dog 1, bird 1 questions
    task = _vqa_task({"train": train, "val": val, "test": val},
                     {"min_answer_count": 2, "answer_count": "majority", "answer_vocab_splits": ["train", "val"]})
    assert task.answers == sorted(a for a, c in counts.items() if c >= 2) == ["cat"]
    only_train = _vqa_task({"train": train, "val": val, "test": val}, {"min_answer_count": 1, "answer_count": "majority"})
    assert only_train.answers == ["cat", "dog"]


def test_out_of_vocabulary_questions_stay_in_the_denominator():
    train = [(["cat"] * 10, "cat"), (["cat"] * 10, "cat")]
    test = [(["cat"] * 10, "cat"), (["zebra"] * 10, "zebra"), (["zebra"] * 10, "zebra"), (["cat"] * 10, "cat")]
    task = _vqa_task({"train": train, "val": test, "test": test}, {})
    assert task.answers == ["cat"]
    result = task.score("test", ["cat"] * 4)
    assert result.primary == pytest.approx(50.0) and len(result.per_example) == 4


def test_workers_give_the_same_metrics_on_disk_images(data, tmp_path):
    args = ["run", "--task", "vqa", "--dataset", f"vqav2:{data['vqa']}", "--baseline", "vilt", *SMALL_MODEL, *TINY,
            "--max-steps", "2"]
    metrics = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert main([*args, "--num-workers", str(workers), "--results-dir", str(out)]) == 0
        (record_file,) = out.rglob("seed-0.json")
        record = json.loads(record_file.read_text())
        metrics.append((record["test"]["metrics"], record["per_example"]["test"], record["training"]["history"][0]["train_loss"]))
    assert metrics[0] == metrics[1]


def test_strict_images_flag_turns_the_skipped_image_into_an_error(data, tmp_path, capsys):
    args = ["run", "--task", "vqa", "--dataset", f"vqav2:{data['vqa']}", "--baseline", "vilt", *SMALL_MODEL, *TINY,
            "--results-dir", str(tmp_path)]
    assert main([*args, "--strict-images"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "COCO_train2014_000000000003.jpg" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("seed-0.json"))
