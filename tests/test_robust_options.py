"""The robustness training options end to end: refused at planning with one line, in the hash only when set, runs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main

SHORT = [*TINY_DATA, "--set", "training.max_steps=2", "--set", "training.epochs=0"]

REFUSED = [
    ("vqa", "vilt", "training.augment.color_jitter.hue=0.1", "augment.color_jitter with hue or saturation is refused "
     "by task type 'vqa'"),
    ("vqa", "vilt", "training.augment.color_jitter={saturation: 0.3}", "refused by task type 'vqa'"),
    ("vmt", "mt-text", "training.augment.flip=0.5", "augment.flip is refused by task type 'vmt'"),
    ("captioning", "captioner-vilt", "training.augment.token_mask=0.1", "read no input text"),
    ("vqa", "prior", "training.augment.flip=0.5", "is fitted, not trained by gradient descent on batches"),
    ("vqa", "vilt", "training.augment={}", "augment enables nothing"),
    ("vqa", "coattention", "training.augment.crop={}", None),  # with the frozen image part below
    ("vqa", "text-bert", "training.adversarial.modalities=[image]", "model type 'bert-text' reads text only"),
    ("vqa", "vilt", "training.adversarial.modalities=[audio]", "'training.adversarial.modalities.0'"),
    ("vqa", "vilt", "training.adversarial={steps: 1}", "only repeats the clean loss"),
    ("vqa", "vilt-lora", "training.adversarial.epsilon=0", "greater than 0"),
]


@pytest.mark.parametrize("task, baseline, setting, message", REFUSED, ids=[r[2] for r in REFUSED])
def test_a_refused_option_is_one_error_line_and_exit_2(task, baseline, setting, message, tmp_path, capsys):
    extra = []
    if message is None:  # a frozen image part caches its features per image: augmented pixels never reach them
        extra = ["--set", "baseline.config.image_part={freeze: true}", "--set", "baseline.config.grid_size=2"]
        message = "cannot reach a frozen image part whose features are cached per image"
    code = main(["run", "--task", task, "--baseline", baseline, "--results-dir", str(tmp_path), "--quiet",
                 "--set", setting, *extra, *TINY_DATA])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    assert message in err, err
    assert not list(tmp_path.rglob("seed-*.json"))


def test_frozen_cached_features_refuse_both_options(tmp_path, capsys):
    for setting in ("training.augment.flip=0.5", "training.adversarial.steps=2"):
        code = main(["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(tmp_path), "--quiet",
                     "--set", "baseline.peft={method: frozen}", "--set", setting, *TINY_DATA])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "cache_features" in err and len(err.splitlines()) == 1, err


def _digest(*settings: str) -> str:
    from vlbench.plan import RunRequest, resolve_runs
    from vlbench.specs import config_hash, load_baseline_spec, load_task_spec

    request = RunRequest(load_task_spec("vqa"), [load_baseline_spec("vilt")], results_dir=None,  # type: ignore[arg-type]
                         overrides=list(settings))
    return config_hash(resolve_runs(request)[0])


def test_the_config_hash_changes_with_an_option_and_not_without_it():
    plain = _digest()
    assert _digest("training.augment=null", "training.adversarial=null") == plain
    flip = _digest("training.augment.flip=0.5")
    assert flip != plain and _digest("training.augment={flip: 0.5, rotation: 0}") == flip
    assert _digest("training.augment.flip=0.25") != flip
    adversarial = _digest("training.adversarial.steps=3")
    assert adversarial not in (plain, flip) and _digest("training.adversarial={}") == adversarial
    assert _digest("training.adversarial.norm=linf") != adversarial


RUNS = [
    ("vqa", "vilt", "training.augment={flip: 0.5, crop: {}, rotation: 10, color_jitter: {brightness: 0.2}, "
     "token_dropout: 0.1, token_mask: 0.1, word_shuffle: 2}"),
    ("vqa", "vilt", "training.adversarial={steps: 2, epsilon: 0.5, step_size: 0.2}"),
    ("retrieval", "retrieval-dual", "training.augment={flip: 0.5, rotation: 10, token_dropout: 0.1}"),
    ("retrieval", "retrieval-dual", "training.adversarial={steps: 2, norm: linf, epsilon: 0.01, step_size: 0.005}"),
]


@pytest.mark.parametrize("task, baseline, setting", RUNS, ids=[f"{r[0]}-{r[2].split('=')[0]}" for r in RUNS])
def test_a_short_run_with_the_option_completes_and_records_it(task, baseline, setting, tmp_path):
    assert main(["run", "--task", task, "--baseline", baseline, "--results-dir", str(tmp_path), "--quiet",
                 "--set", setting, *SHORT]) == 0
    record = json.loads(next(tmp_path.rglob("seed-0.json")).read_text())
    key = setting.split("=")[0].split(".")[1]
    assert record["status"] == "ok" and record["config"]["training"][key] is not None
    assert record["training"]["steps"] == 2
    plain = tmp_path / "plain"
    assert main(["run", "--task", task, "--baseline", baseline, "--results-dir", str(plain), "--quiet", *SHORT]) == 0
    other = json.loads(next(plain.rglob("seed-0.json")).read_text())
    assert "augment" not in other["config"]["training"] and "adversarial" not in other["config"]["training"]
    assert other["config_hash"] != record["config_hash"]
