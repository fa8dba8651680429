"""Paper-recipe task specs: each validates, names the published number it targets, is documented with its
one command, and runs a few steps on a tiny dataset in the official layout with tiny pretrained checkpoints
(bert-base and coattention-pretrained on these checkpoints: tests/test_pretrained_path.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import official_layouts
from tests.pretrained_fixtures import checkpoints  # noqa: F401
from tests.zoo_fixtures import one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# recipe -> dataset, published numbers written beside it, the baselines that must take part, fixture writer
RECIPES = {
    "vqav2-vilt": ("vqav2", ["71.26"], {"vilt-b32", "bert-base", "coattention-pretrained", "prior"},
                   official_layouts.write_vqav2),
    "flickr30k-vilt": ("flickr30k", ["83.5", "64.4"], {"vilt-b32", "retrieval-chance"}, official_layouts.write_flickr30k),
    "coco-vilt": ("coco-karpathy", ["61.5", "42.7"], {"vilt-b32", "retrieval-chance"},
                  official_layouts.write_coco_karpathy),
    "multi30k-en-de": ("multi30k", ["41.02", "41.96"], {"mt-transformer-tiny", "mmt-transformer-tiny"},
                       official_layouts.write_multi30k),
}


def _supporting(task: str) -> list[str]:
    from vlbench.specs import available_specs, load_baseline_spec

    return [name for name in available_specs("baselines") if task in load_baseline_spec(name).tasks]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_spec_validates_and_writes_its_target_beside_it(name):
    from vlbench.models.base import validate_model_config
    from vlbench.peft.config import parse_peft
    from vlbench.specs import available_specs, load_baseline_spec, load_task_spec, resolve_run_config

    dataset, targets, required, _ = RECIPES[name]
    spec = load_task_spec(name)
    assert spec.dataset == dataset
    text = available_specs("tasks")[name].read_text(encoding="utf-8")
    assert all(t in text for t in targets) and f"vlbench run --task {name}" in text
    if name != "multi30k-en-de":  # ViLT's recipes: batch 256 per optimizer step, reached by accumulation
        assert spec.training.batch_size * spec.training.grad_accum_steps == 256
        assert (spec.training.epochs, spec.training.lr, spec.training.weight_decay, spec.training.warmup_ratio) == (
            10, 1e-4, 0.01, 0.1)
    supporting = _supporting(name)
    assert required <= set(supporting)
    for baseline in supporting:
        config = resolve_run_config(spec, load_baseline_spec(baseline))
        validate_model_config(config.baseline.model, config.baseline.config, baseline)
        parse_peft(config.baseline.peft, baseline)
    docs = (ROOT / "docs" / "pretrained.md").read_text(encoding="utf-8")
    assert f"vlbench run --task {name}" in docs and all(t in docs for t in targets)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_runs_a_few_steps_on_an_official_layout_fixture(name, checkpoints, tmp_path, one_thread):
    from vlbench.cli.main import main
    from vlbench.registry import DATASETS

    dataset, _, _, write = RECIPES[name]
    if dataset not in DATASETS:
        pytest.skip(f"dataset builder {dataset!r} is not registered in this checkout (it ships with the real-dataset "
                    "builders); the recipe spec itself is validated above")
    root = write(tmp_path / "data")
    results = tmp_path / "runs"
    base = ["run", "--task", name, "--dataset", f"{dataset}:{root}", "--results-dir", str(results), "--max-steps", "2",
            "--batch-size", "4", "--quiet", "--set", "task.options.image_size=64", "--set", "training.num_workers=0"]
    calls: list[tuple[list[str], list[str]]] = []
    if name == "multi30k-en-de":
        calls.append((["mt-transformer-tiny", "mmt-transformer-tiny"],
                      [f"baseline.config.backbone_weights={checkpoints['resnet']}", "task.options.beam_size=2"]))
    else:
        calls.append((["vilt-b32"], [f"baseline.pretrained={checkpoints['vilt']}"]))
    for baselines, sets in calls:
        args = list(base)
        for b in baselines:
            args += ["--baseline", b]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0, f"{name}: {baselines}"
        for b in baselines:
            record = json.loads(next((results / name).glob(f"*/{b}/seed-0.json")).read_text())
            assert record["training"]["steps"] == 2 and record["config"]["training"]["grad_accum_steps"] >= 1
            assert record["primary_metric"] in record["test"]["metrics"]
