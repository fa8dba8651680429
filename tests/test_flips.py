"""Items the image flips: hand-computed counts, a real run's block, the table column and the page's thumbnails."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from tests.conftest import TINY_DATA
from vlbench.results.flips import flip_counts, flips_block

SMALL_VILT = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
              "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def test_counts_equal_hand_computed_values():
    real = {"1": 1.0, "2": 0.0, "3": 1.0, "4": 0.3, "5": 0.6, "6": 1.0}
    blank = {"1": 0.0, "2": 1.0, "3": 1.0, "4": 0.0, "5": 0.0, "6": 0.3}
    groups = {"1": "what color", "2": "what color", "3": "how many", "4": "how many", "5": "how many", "6": "is there"}
    counts = flip_counts(real, blank, groups)
    # right means >= half the full mark: real right 1,3,5,6; blank right 2,3
    assert (counts["helped"], counts["hurt"], counts["right_real"], counts["right_blank"]) == (3, 1, 4, 2)
    assert counts["by_type"] == {"how many": {"helped": 1, "hurt": 0}, "is there": {"helped": 1, "hurt": 0},
                                 "what color": {"helped": 1, "hurt": 1}}
    with pytest.raises(ValueError):
        flip_counts(real, {"1": 1.0})


def test_examples_come_from_the_most_flipped_groups_first():
    def view(scores, answers):
        return {"group_by": "question type", "full_mark": 1.0, "items": {
            k: {"score": s, "group": "what color" if k in "12" else "how many", "question": f"q{k}",
                "answer": answers[k], "image_id": int(k) * 10} for k, s in scores.items()}}

    block = flips_block(view({"1": 0.0, "2": 1.0, "3": 1.0}, {"1": "red", "2": "blue", "3": "2"}),
                        view({"1": 1.0, "2": 0.0, "3": 0.0}, {"1": "green", "2": "red", "3": "3"}))
    assert (block["helped"], block["hurt"]) == (2, 1)
    assert [(e["type"], e["id"], e["direction"]) for e in block["examples"]] == [("what color", "2", "helped"),
                                                                              ("how many", "3", "helped")]
    first = block["examples"][0]
    assert (first["answer_real"], first["answer_blank"], first["image_id"]) == ("blue", "red", 20)


class _RightWhenSeen(nn.Module):
    """Answers item i right when it sees a real image and i is even, or a blank image and i is a multiple of 3."""

    def forward(self, batch):
        pixels = batch["pixel_values"].flatten(1)
        blank = (pixels.max(1).values - pixels.min(1).values) < 1e-6
        index = batch["index"]
        right = torch.where(blank, index % 3 == 0, index % 2 == 0)
        answer = torch.where(right, batch["targets"].argmax(-1), batch["targets"].argmin(-1))
        return torch.nn.functional.one_hot(answer, batch["targets"].shape[1]).float()


def test_the_vqa_task_flips_what_the_image_changes(cache_dir):
    """Through the real VQA task, its official scorer and the blank-image store: counts as computed by hand."""
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.results.ablation import ablated_images, ablation_block
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    dataset = build_shapes(None, {"train_images": 30, "val_images": 8, "test_images": 8}, cache_dir, quiet=True)
    task = VQATask(load_task_spec("vqa"), dataset)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    model, modalities, cpu = _RightWhenSeen(), ("text", "image"), torch.device("cpu")

    def evaluate():
        return task.evaluate(model, "test", 5, modalities, cpu)

    real = evaluate()
    block = ablation_block(dataset, "accuracy", real.metrics["accuracy"], evaluate, task.image_ids("test"),
                           flips=lambda blank: flips_block(task.flip_view("test", real), task.flip_view("test", blank)))
    with ablated_images(dataset, "blank"):
        blank = evaluate()
    flips = block["flips"]
    qids = [str(q) for q in task._rows["test"]["question_id"]]
    types = list(task._rows["test"]["question_type"])
    right_real = {q for q in qids if real.per_example[q] >= 0.5}
    right_blank = {q for q in qids if blank.per_example[q] >= 0.5}
    helped, hurt = right_real - right_blank, right_blank - right_real
    assert helped and hurt  # the hand-built model flips items both ways
    assert (flips["helped"], flips["hurt"]) == (len(helped), len(hurt))
    assert (flips["right_real"], flips["right_blank"]) == (len(right_real), len(right_blank))
    assert flips["helped"] - flips["hurt"] == len(right_real) - len(right_blank)
    by_type = {}
    for q, t in zip(qids, types):
        if q in helped or q in hurt:
            by_type.setdefault(t, {"helped": 0, "hurt": 0})["helped" if q in helped else "hurt"] += 1
    assert flips["by_type"] == by_type
    for example in flips["examples"]:
        i = qids.index(example["id"])
        assert example["type"] == types[i] and example["question"] == task._rows["test"]["question"][i]
        assert example["image_id"] == task._rows["test"]["image_id"][i]
        assert example["id"] in (helped if example["direction"] == "helped" else hurt)
        assert example["answer_real"] == real.predictions[i]["answer"]
        assert example["answer_blank"] == blank.predictions[i]["answer"]
    assert len(flips["examples"]) == min(8, len(by_type))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, cache_dir):
    import os

    from vlbench.cli.main import main

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    assert main(["run", "--task", "vqa", "--baseline", "vilt", "--baseline", "text-bert", "--results-dir",
                 str(results), "--max-steps", "2", "--quiet", "--seeds", "0,1", *TINY_DATA, *SMALL_VILT]) == 0
    return results


def test_a_real_run_records_consistent_flips(run_folder):
    from vlbench.cli.main import main

    record = json.loads((run_folder / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())
    flips = record["ablation"]["flips"]
    scores = record["per_example"]["test"]
    assert flips["items"] == len(scores) and flips["right_real"] == sum(v >= 0.5 for v in scores.values())
    assert flips["helped"] - flips["hurt"] == flips["right_real"] - flips["right_blank"]
    assert sum(c["helped"] for c in flips["by_type"].values()) == flips["helped"]
    assert sum(c["hurt"] for c in flips["by_type"].values()) == flips["hurt"]
    text_only = json.loads((run_folder / "vqa" / "shapes" / "text-bert" / "seed-0.json").read_text())
    assert text_only["ablation"] is None  # a model that reads no image has nothing to flip
    assert main(["validate", str(run_folder)]) == 0


def test_the_table_shows_mean_flips_over_seeds(run_folder):
    """The run's records, their flips set to known counts (a 2-step run flips nothing): means over seeds."""
    from vlbench.results.records import load_records
    from vlbench.results.table import aggregate, render

    records = load_records(run_folder)
    known = {0: (3, 1), 1: (6, 4)}
    for record in records:
        if record["baseline"] == "vilt":
            helped, hurt = known[record["seed"]]
            record["ablation"]["flips"].update(helped=helped, hurt=hurt)
    rows = {r["baseline"]: r for r in aggregate(records).rows if r["primary"]}
    assert (rows["vilt"]["flips_helped"], rows["vilt"]["flips_hurt"], rows["vilt"]["flips_seeds"]) == (4.5, 2.5, 2)
    assert rows["text-bert"]["flips_helped"] is None
    assert "4.5 / 2.5" in render(aggregate(records), "md")
    header = {"md": "| flips (helped/hurt) |", "latex": "flips (helped/hurt) &", "html": "<th>flips (helped/hurt)</th>",
              "csv": ",flips_helped,flips_hurt,", "json": '"flips_hurt": '}
    for fmt, cell in header.items():
        assert cell in render(aggregate(records), fmt), fmt
    import io

    from rich.console import Console

    console = Console(record=True, width=600, file=io.StringIO())
    console.print(render(aggregate(records), "rich"))
    assert "flips (helped/hurt)" in console.export_text().splitlines()[2]  # a column header, not only the legend


@pytest.fixture(scope="module")
def site(run_folder, tmp_path_factory):
    """The run's own record, given examples on real images of its dataset (hostile text), as a leaderboard."""
    from vlbench.cli.main import main

    record = json.loads((run_folder / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())
    examples = [{"id": str(k), "type": "what <b>color</b>", "direction": "helped", "question": "<script>x</script>",
                 "answer_real": "red", "answer_blank": "blue", "image_id": image_id}
                for k, image_id in enumerate(_image_ids(record))]
    record["ablation"]["flips"] = {**record["ablation"]["flips"], "examples": examples}
    runs, out = tmp_path_factory.mktemp("page-runs"), tmp_path_factory.mktemp("site")
    (runs / "seed-0.json").write_text(json.dumps(record))
    assert main(["leaderboard", str(runs), "--out", str(out)]) == 0
    return out / "index.html"


def test_the_page_shows_examples_with_thumbnails_on_disk(site):
    from PIL import Image

    page = site.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 3 and "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "what &lt;b&gt;color&lt;/b&gt;" in page
    for name in sources:
        assert "/" not in name and (site.parent / name).is_file()
        with Image.open(site.parent / name) as image:
            assert image.format == "PNG" and max(image.size) <= 96


def test_chromium_loads_the_thumbnails(site, tmp_path):
    """The page's Content-Security-Policy lets its own images beside it load, and nothing from the network."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_leaderboard import _browser

    browser = _browser(tmp_path)
    try:
        browser.get(site.as_uri())
        for details in browser.find_elements(By.TAG_NAME, "details"):
            browser.execute_script("arguments[0].open = true", details)
        images = browser.find_elements(By.CSS_SELECTOR, "table.flips img")

        def widths(_driver):
            return [browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images]

        # The thumbnails load lazily once their <details> opens, so each may still be on its way: wait for all of
        # them, and fail with the widths seen if one never loads (a blocked image ends complete with width 0).
        try:
            WebDriverWait(browser, 20).until(lambda d: all(w is not False for w in widths(d)))
        except TimeoutException:
            pass
        seen = widths(browser)
        assert len(images) == 3 and all(w and w > 0 for w in seen), seen
    finally:
        browser.quit()


def _image_ids(record):
    """The first three image ids of the record's dataset, read from the dataset itself."""
    from vlbench.data.loading import load_dataset

    config = record["config"]
    dataset = load_dataset(config["dataset"], config["task"]["data"], None, quiet=True)
    return dataset.images.ids()[:3]
