"""The robustness suites in runs: `vlbench run --robustness`, `vlbench robustness RUN_DIR`, records and tables."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

SMALL_VILT = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
              "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
# two severities, one budget and two PGD steps: every suite runs, in seconds
SHORT_SUITES = ["--set", "training.robustness.severities=[1,5]", "--set", "training.robustness.attack_budgets=[2]",
                "--set", "training.robustness.attack_steps=2"]


@pytest.fixture(scope="module")
def vqa_runs(tmp_path_factory, cache_dir):
    import os

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("runs")
    code = main(["run", "--task", "vqa", "--baseline", "vilt", "--baseline", "text-bert", "--results-dir",
                 str(results), "--max-steps", "2", "--quiet", "--robustness", "--keep-model", *TINY_DATA, *SMALL_VILT,
                 *SHORT_SUITES])
    assert code == 0
    return results


def _block(results, task, baseline):
    return json.loads((results / task / "shapes" / baseline / "seed-0.json").read_text())


def test_a_vqa_run_records_every_suite_and_validates(vqa_runs):
    record = _block(vqa_runs, "vqa", "vilt")
    block = record["robustness"]
    assert record["schema"] == 4 and block["metric"] == "accuracy" and block["clean"] == record["test"]["metrics"]["accuracy"]
    corruptions = block["corruptions"]
    assert corruptions["applies"] and corruptions["severities"] == [1, 5] and corruptions["image_side"] == 64
    assert set(corruptions["by_corruption"]) == {"gaussian_noise", "gaussian_blur", "jpeg_compression", "brightness",
                                                 "contrast"}
    scores = [v for values in corruptions["by_corruption"].values() for v in values]
    assert corruptions["mean"] == pytest.approx(np.mean(scores))
    clean = block["clean"]
    expected_drop = (clean - corruptions["mean"]) / clean if clean else None
    assert corruptions["relative_drop"] == pytest.approx(expected_drop)
    assert corruptions["parameters"]["jpeg_compression"]["values"] == [65, 25]  # Tiny-ImageNet-C at 64 px
    text = block["text"]
    assert text["applies"] and text["typos"]["rates"] == [0.05, 0.1, 0.2] and len(text["word_dropout"]["scores"]) == 3
    assert text["rephrasings"] == {"applies": False, "reason": text["rephrasings"]["reason"]}
    attack = block["attack"]
    assert attack["applies"] and attack["budgets"] == [2.0] and attack["steps"] == 2 and len(attack["robust"]) == 1
    assert attack["loss_attacked"][0] >= attack["loss_clean"][0]
    assert record["weights_file"] == "seed-0.weights.safetensors" and len(record["weights_sha256"]) == 64
    assert main(["validate", str(vqa_runs)]) == 0


def test_a_text_only_model_is_marked_not_attacked(vqa_runs):
    block = _block(vqa_runs, "vqa", "text-bert")["robustness"]
    for suite in ("corruptions", "attack"):
        assert block[suite] == {"applies": False, "reason": block[suite]["reason"], "text_only": True}
        assert "unaffected by construction" in block[suite]["reason"]
    assert block["text"]["applies"]  # its questions are perturbed like everyone's


def test_the_table_shows_the_robustness_columns_in_every_format(vqa_runs):
    from vlbench.results.records import load_records
    from vlbench.results.table import aggregate, render

    table = aggregate(load_records(vqa_runs))
    rows = {r["baseline"]: r for r in table.rows if r["primary"]}
    vilt = _block(vqa_runs, "vqa", "vilt")["robustness"]
    assert rows["vilt"]["robust_corrupted"] == pytest.approx(vilt["corruptions"]["mean"])
    assert rows["vilt"]["robust_pgd_budgets"] == [2.0] and rows["vilt"]["robust_pgd"] == vilt["attack"]["robust"]
    assert rows["text-bert"]["robust_text_only"] and rows["text-bert"]["robust_corrupted"] is None
    for fmt in ("md", "latex", "html"):
        text = render(table, fmt)
        for column in ("corrupted (mean)", "corruption drop", "typos", "word dropout", "PGD 2/255"):
            assert column in text, (fmt, column)
        assert "text-only" in text
    md = render(table, "md")
    text_bert = next(line for line in md.splitlines() if line.startswith("| text-bert"))
    assert text_bert.count("| text-only |") + text_bert.count("| text-only") >= 3
    for fmt in ("csv", "json"):
        text = render(table, fmt)
        assert "robust_corrupted" in text and "robust_pgd" in text and "robust_text_only" in text


def test_the_finished_runs_give_the_same_numbers_again(vqa_runs, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(vqa_runs, copy)
    for baseline in ("vilt", "text-bert"):
        path = copy / "vqa" / "shapes" / baseline / "seed-0.json"
        record = json.loads(path.read_text())
        record.pop("robustness")
        path.write_text(json.dumps(record))
    assert main(["robustness", str(copy), "--severities", "1,5", "--budgets", "2", "--steps", "2"]) == 0
    for baseline in ("vilt", "text-bert"):
        assert _block(copy, "vqa", baseline)["robustness"] == _block(vqa_runs, "vqa", baseline)["robustness"]
    assert main(["validate", str(copy)]) == 0


def test_the_leaderboard_plots_accuracy_against_severity(vqa_runs, tmp_path):
    from vlbench.results.leaderboard import build_page
    from vlbench.results.records import load_records

    page = build_page(load_records(vqa_runs), rounds=100)
    assert "corruption severity (0: clean)" in page and "vs corruption severity" in page
    figure = page[page.index("vs corruption severity") - 4000:page.index("vs corruption severity")]
    assert "vilt" in figure and "<path" in figure


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_input_is_one_error_line(vqa_runs, tmp_path, capsys):
    assert main(["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(tmp_path), "--max-steps", "1",
                 "--robustness-suites", "corruptions,fog", *TINY_DATA]) == 2
    assert "unknown suite 'fog'" in _one_error_line(capsys)
    assert main(["robustness", str(vqa_runs), "--suites", "noise"]) == 2
    assert "unknown suite 'noise'" in _one_error_line(capsys)
    assert main(["robustness", str(vqa_runs), "--severities", "0,9"]) == 2
    assert "severities" in _one_error_line(capsys)
    bare = tmp_path / "bare"
    shutil.copytree(vqa_runs / "vqa" / "shapes" / "vilt", bare)
    (bare / "seed-0.weights.safetensors").unlink()
    record = json.loads((bare / "seed-0.json").read_text())
    record.pop("weights_file")
    record.pop("weights_sha256")
    (bare / "seed-0.json").write_text(json.dumps(record))
    assert main(["robustness", str(bare)]) == 2
    assert "kept no trained weights" in _one_error_line(capsys)
    assert main(["robustness", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_changed_weights_are_refused(vqa_runs, tmp_path, capsys):
    copy = tmp_path / "vilt"
    shutil.copytree(vqa_runs / "vqa" / "shapes" / "vilt", copy)
    from safetensors.torch import load_file, save_file

    weights = copy / "seed-0.weights.safetensors"
    state = load_file(str(weights))
    save_file({k: v + 1 for k, v in state.items()}, str(weights))
    assert main(["robustness", str(copy)]) == 2
    assert "SHA-256" in _one_error_line(capsys)


def test_a_retrieval_run_scores_corruptions_and_captions_and_says_the_attack_does_not_apply(tmp_path, capsys):
    tiny = ["--set", "baseline.config.hidden_size=16", "--set", "baseline.config.text_layers=1",
            "--set", "baseline.config.image_layers=1", "--set", "baseline.config.num_heads=2",
            "--set", "baseline.config.intermediate_size=32", "--set", "task.options.embed_dim=8"]
    assert main(["run", "--task", "retrieval", "--baseline", "retrieval-dual", "--results-dir", str(tmp_path),
                 "--max-steps", "2", "--quiet", "--robustness", *TINY_DATA, *tiny, *SHORT_SUITES]) == 0
    record = _block(tmp_path, "retrieval", "retrieval-dual")
    block = record["robustness"]
    assert block["metric"] == record["primary_metric"] and block["corruptions"]["applies"]
    assert len(block["corruptions"]["by_severity"]) == 2 and block["text"]["applies"]
    assert block["attack"]["applies"] is False and "retrieval" in block["attack"]["reason"]
    assert main(["validate", str(tmp_path)]) == 0
    assert main(["table", str(tmp_path), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "corrupted (mean)" in out and "PGD n/a:" in out


def test_corrupted_images_neither_read_nor_fill_a_frozen_feature_cache(tmp_path):
    from vlbench.data.feature_cache import FeatureCache
    from vlbench.models.base import EncoderOutput
    from vlbench.robustness.suite import uncached
    from vlbench.training.frozen import CachedFeatureEncoder

    class Backbone(torch.nn.Module):
        modalities, hidden_size = ("image",), 3

        def forward(self, batch):
            return EncoderOutput(pooled=batch["pixel_values"].mean((2, 3)))

    encoder = CachedFeatureEncoder(Backbone(), FeatureCache(tmp_path / "features.safetensors"))
    clean = {"index": torch.arange(2), "pixel_values": torch.rand(2, 3, 4, 4)}
    encoder(clean)
    assert len(encoder.cache) == 2 and encoder.cache.save() is not None
    corrupted = {**clean, "pixel_values": clean["pixel_values"] * 0.5}
    with uncached(torch.nn.Sequential(encoder)):
        out = encoder(corrupted).pooled
    assert torch.allclose(out, corrupted["pixel_values"].mean((2, 3)))  # computed on the corrupted pixels
    assert len(encoder.cache) == 2 and not encoder.bypass_cache  # nothing added; the flag is put back
    assert len(FeatureCache(tmp_path / "features.safetensors")) == 2


def test_a_frozen_pretrained_part_computes_corrupted_and_attacked_images_itself(tmp_path):
    from vlbench.models.parts.effnet import EfficientNetLitePart
    from vlbench.robustness.corruptions import corrupt
    from vlbench.robustness.suite import uncached

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        part = EfficientNetLitePart(grid=2, size=64)
        path = part.attach_cache(tmp_path)
        images = torch.randint(0, 256, (2, 48, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
        transform = part.image_transform()
        clean = transform.from_uint8(images)["pixel_values"]
        clean_out = part(clean).pooled
        part.save_cache()
        cached, memo = len(part.cache), len(part._tokens)
        noisy = np.stack([corrupt(img, "gaussian_noise", 5, 0, i) for i, img in enumerate(images.numpy())])
        pixels = transform.from_uint8(torch.from_numpy(noisy))["pixel_values"].requires_grad_(True)
        with uncached(torch.nn.Sequential(part)):
            out = part(pixels)
            (grad,) = torch.autograd.grad(out.pooled.sum(), pixels)  # an attack's gradient reaches the pixels
        assert float(grad.abs().sum()) > 0 and not torch.allclose(out.pooled, clean_out)
        direct = part._outputs(part.head(part.trunk(pixels.detach()))).pooled  # the part's own computation
        torch.testing.assert_close(out.pooled.detach(), direct)
        assert len(part.cache) == cached and len(part._tokens) == memo  # nothing cached
        assert part.save_cache() == path and len(type(part.cache)(path)) == cached
        torch.testing.assert_close(part(clean).pooled, clean_out)  # the clean cache still serves clean images
    finally:
        torch.set_num_threads(threads)


def test_a_captioning_run_attacks_the_decoders_training_loss(tmp_path, java):
    small = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
             "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64",
             "--set", "task.options.decoder.num_layers=1", "--set", "task.options.decoder.intermediate_size=64",
             "--set", "task.options.max_target_length=16", "--set", "task.options.beam_size=1"]
    assert main(["run", "--task", "captioning", "--baseline", "captioner-vilt", "--results-dir", str(tmp_path),
                 "--max-steps", "2", "--quiet", "--robustness-suites", "attack,text", *TINY_DATA, *small,
                 "--set", "training.robustness.attack_budgets=[4]", "--set", "training.robustness.attack_steps=3"]) == 0
    record = _block(tmp_path, "captioning", "captioner-vilt")
    block = record["robustness"]
    assert block["metric"] == "CIDEr" and block["suites"] == ["attack", "text"] and "corruptions" not in block
    assert block["attack"]["applies"] and block["attack"]["loss_attacked"][0] > block["attack"]["loss_clean"][0]
    assert block["text"] == {"applies": False, "reason": "task type 'captioning' gives the model no text to perturb"}
    assert main(["validate", str(tmp_path)]) == 0
