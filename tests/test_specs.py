"""Spec loading and validation errors, overrides, and config hashing."""

from __future__ import annotations

import pytest

from vlbench.errors import SpecError, UnknownNameError
from vlbench.specs import (
    available_specs,
    config_hash,
    load_baseline_spec,
    load_task_spec,
    parse_override,
    resolve_run_config,
)


def test_shipped_specs_validate():
    assert {"vqa"} <= set(available_specs("tasks"))
    assert {"prior", "text-bert", "vilt"} <= set(available_specs("baselines"))
    for name in available_specs("tasks"):
        load_task_spec(name)
    for name in available_specs("baselines"):
        load_baseline_spec(name)


def test_unknown_spec_name_suggests(monkeypatch):
    with pytest.raises(UnknownNameError, match="Did you mean 'vilt'"):
        load_baseline_spec("vitl")


def test_invalid_field_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: vilt\ntasks: [vqa]\ntraining: {}\nconfig: {}\nunknown_key: 3\n")
    with pytest.raises(SpecError) as info:
        load_baseline_spec(str(bad))
    assert str(bad) in str(info.value) and "unknown_key" in str(info.value)
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("type: vqa\nprimary_metric: accuracy\ntraining: {epochs: many}\n")
    with pytest.raises(SpecError, match=r"training\.epochs"):
        load_task_spec(str(wrong_type))


def test_broken_yaml_names_the_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: vilt\ntasks: [vqa\n")
    with pytest.raises(SpecError, match=r"broken\.yaml.*line \d+.*broken YAML"):
        load_baseline_spec(str(broken))


def test_overrides_apply_validate_and_change_the_hash():
    task, base = load_task_spec("vqa"), load_baseline_spec("vilt")
    plain = resolve_run_config(task, base)
    changed = resolve_run_config(task, base, overrides=["training.epochs=3", "baseline.config.hidden_size=64",
                                                        "task.options.image_size=32"])
    assert changed.training.epochs == 3
    assert changed.baseline.config["hidden_size"] == 64
    assert changed.task.options["image_size"] == 32
    assert config_hash(plain) != config_hash(changed)
    assert config_hash(plain) == config_hash(resolve_run_config(task, base))
    seeds_only = resolve_run_config(task, base, overrides=["training.seeds=[5, 6]"])
    assert config_hash(seeds_only) == config_hash(plain)  # seeds are part of the record key, not the config
    with pytest.raises(SpecError, match="training.epochs"):
        resolve_run_config(task, base, overrides=["training.epochs=-1"])
    with pytest.raises(SpecError, match="Did you mean 'training'"):
        resolve_run_config(task, base, overrides=["trainng.epochs=2"])
    with pytest.raises(SpecError, match="unknown|Extra"):
        resolve_run_config(task, base, overrides=["training.nonsense=2"])
    with pytest.raises(SpecError, match="key.path=value"):
        parse_override("no-equals-sign")


def test_cli_flags_win_over_spec_training():
    task, base = load_task_spec("vqa"), load_baseline_spec("text-bert")
    assert task.training.epochs != 3
    config = resolve_run_config(task, base, training_overrides={"epochs": 3, "lr": None})
    assert config.training.epochs == 3 and config.training.lr == task.training.lr


def test_dataset_options_take_both_spellings():
    from vlbench.cli.data import parse_data_overrides

    task, base = load_task_spec("vqa"), load_baseline_spec("vilt")
    short = resolve_run_config(task, base, overrides=["data.train_images=123", "data.question_mix={relation: 0.1}"])
    full = resolve_run_config(task, base, overrides=["task.data.train_images=123",
                                                     "task.data.question_mix={relation: 0.1}"])
    assert short.task.data == {"train_images": 123, "question_mix": {"relation": 0.1}}
    assert config_hash(short) == config_hash(full)
    assert parse_data_overrides(["task.data.seed=3", "data.train_images=50"]) == {"seed": 3, "train_images": 50}
    with pytest.raises(SpecError, match="data.KEY=VALUE"):
        parse_data_overrides(["training.epochs=2"])


def test_every_settings_block_refuses_a_boolean_for_a_number():
    # pydantic's lax mode reads true as 1: one layer, one epoch, a 1-pixel image, all without a word
    import pydantic

    from vlbench.data.shapes.build import ShapesOptions
    from vlbench.models.vilt import ViltEncoder
    from vlbench.peft.config import LoraSpec
    from vlbench.specs import TrainingConfig
    from vlbench.tasks.vqa import VQAOptions

    cases = [(ViltEncoder.Config, "num_layers"), (TrainingConfig, "epochs"), (VQAOptions, "image_size"),
             (ShapesOptions, "train_images"), (LoraSpec, "r")]
    for settings, name in cases:
        extra = {"method": "lora"} if settings is LoraSpec else {}
        with pytest.raises(pydantic.ValidationError, match=f"field '{name}' takes a number, got the boolean true"):
            settings.model_validate({**extra, name: True})
    assert TrainingConfig.model_validate({"compile": True}).compile is True  # a real boolean field still takes one
