"""PEFT methods freeze exactly what they claim, start from the original model, and their checkpoints reload exactly."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from tests.zoo_fixtures import SMALL, distinct_rows, one_thread, tiny  # noqa: F401
from vlbench.errors import SpecError

VILT_SMALL = {**SMALL, "num_layers": 2}


def _encoder_names(model) -> set[str]:
    return {f"encoder.{n}" for n, _ in model.encoder.named_parameters()}


def _expected_trainable(method: str, name: str, variant: str = "houlsby") -> bool:
    """The claim of each method, written independently of its implementation."""
    inside = name.startswith("encoder.")
    if not inside:
        return True  # the task head always trains
    if method == "lora":
        return ".lora_A." in name or ".lora_B." in name
    if method == "adapter":
        return ".adapter." in name or (variant == "houlsby" and "layernorm" in name.lower())
    if method == "bitfit":
        return name.endswith(".bias")
    if method == "prompt":
        return name.startswith("encoder.prompt.")
    return False  # frozen


CASES = [
    ("lora", {"method": "lora", "r": 4, "alpha": 8}),
    ("adapter", {"method": "adapter", "variant": "houlsby", "reduction_factor": 8}),
    ("bitfit", {"method": "bitfit"}),
    ("prompt", {"method": "prompt", "num_virtual_tokens": 3}),
    ("frozen", {"method": "frozen", "cache_features": False}),
]


@pytest.mark.parametrize("method, peft", CASES, ids=[c[0] for c in CASES])
def test_method_trains_exactly_what_it_claims_and_nothing_else_moves(method, peft, tiny):
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft=peft))
    model = assembled.model
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    expected = {n for n in named if _expected_trainable(method, n)}
    assert trainable == expected
    assert any(n.startswith("head.") for n in trainable)
    if method != "frozen":
        assert trainable & _encoder_names(model), "the method must train something inside the encoder"
    # gradients reach every trainable parameter and no frozen one
    batch = task.collate("train", distinct_rows(task, 6), assembled.modalities)
    model.train()
    task.loss(model(batch), batch).backward()
    with_grad = {n for n, p in named.items() if p.grad is not None}
    assert with_grad <= trainable
    assert {n for n in trainable if n.startswith("head.")} <= with_grad
    model.zero_grad(set_to_none=True)
    # a few real trainer steps: frozen tensors are bit-identical afterwards, trained ones moved
    before = {n: p.detach().clone() for n, p in named.items()}
    cfg = TrainingConfig(max_steps=3, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-2, patience=0)
    fit(model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    after = dict(model.named_parameters())
    for n in named:
        if n in trainable:
            continue
        assert torch.equal(before[n], after[n].detach()), f"frozen {n} changed"
    assert any(not torch.equal(before[n], after[n].detach()) for n in trainable if n.startswith("encoder.")
               ) or method == "frozen"


@pytest.mark.parametrize("peft", [{"method": "lora", "r": 4}, {"method": "adapter", "variant": "houlsby"},
                                  {"method": "adapter", "variant": "pfeiffer"}], ids=["lora", "houlsby", "pfeiffer"])
def test_lora_and_adapters_start_as_the_original_model(peft, tiny):
    plain, task = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft=None))
    adapted, _ = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft=peft))
    batch = task.collate("train", distinct_rows(task, 4), plain.modalities)
    plain.model.eval()
    adapted.model.eval()
    with torch.no_grad():
        assert torch.allclose(plain.model(batch), adapted.model(batch), atol=1e-6)


def test_adapter_variants_place_adapters_where_the_papers_do(tiny):
    houlsby, _ = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "adapter", "variant": "houlsby"}))
    pfeiffer, _ = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "adapter", "variant": "pfeiffer"}))
    assert len(houlsby.summary.adapted) == 2 * VILT_SMALL["num_layers"]  # attention output + feed-forward output
    assert len(pfeiffer.summary.adapted) == VILT_SMALL["num_layers"]  # feed-forward output only
    assert all(n.endswith("output.dense") and "attention" not in n for n in pfeiffer.summary.adapted)
    bottleneck = houlsby.model.get_submodule(f"encoder.{houlsby.summary.adapted[0]}").adapter.down.out_features
    assert bottleneck == VILT_SMALL["hidden_size"] // 16


def test_bitfit_trains_every_bias_and_only_biases(tiny):
    assembled, _ = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "bitfit"}))
    encoder = assembled.model.encoder
    bias_count = sum(p.numel() for n, p in encoder.named_parameters() if n.endswith("bias"))
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    assert trainable == bias_count > 0


def test_prompt_tokens_enter_the_model_and_positions_fit(tiny):
    assembled, task = tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "prompt", "num_virtual_tokens": 4}))
    wrapper = assembled.model.encoder
    batch = task.collate("train", distinct_rows(task, 4), assembled.modalities)
    # the longest question plus the virtual tokens must fit the position table built for it
    positions = wrapper.encoder.vilt.config.max_position_embeddings
    assert positions >= task.options.max_text_length + 4
    assembled.model.eval()
    with torch.no_grad():
        out = wrapper(batch)
        assert out.sequence.shape[1] == batch["input_ids"].shape[1] + 4 + 17  # + prompt + [CLS] and 16 patches
        before = assembled.model(batch)
        # random, not constant: the embeddings' LayerNorm would cancel a constant shift
        wrapper.prompt.embedding.weight.add_(torch.randn_like(wrapper.prompt.embedding.weight))
        assert not torch.allclose(before, assembled.model(batch))


def test_frozen_batchnorm_statistics_stay_fixed_under_peft(tiny):
    assembled, task = tiny.build(tiny.config("coattention", config={**SMALL, "num_layers": 1},
                                             peft={"method": "lora", "r": 2}))
    model = assembled.model
    norms = {n: m.running_mean.clone() for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norms
    model.train()
    batch = task.collate("train", distinct_rows(task, 4), assembled.modalities)
    task.loss(model(batch), batch).backward()
    for n, m in model.named_modules():
        if n in norms:
            assert torch.equal(norms[n], m.running_mean), n


def test_trained_weights_reload_into_a_fresh_model_with_identical_outputs(tiny, tmp_path):
    from vlbench.peft.apply import trained_state
    from vlbench.peft.checkpoint import load_trained_weights, save_trained_weights
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    config = tiny.config("vilt-adapter", config=VILT_SMALL)
    trained, task = tiny.build(config, seed=3)
    cfg = TrainingConfig(max_steps=4, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-2, patience=0)
    fit(trained.model, task, cfg, accelerator=get_accelerator("cpu"), seed=3, modalities=trained.modalities)
    state = trained_state(trained.model)
    assert set(state) == {n for n, p in trained.model.named_parameters() if p.requires_grad}
    path = save_trained_weights(state, tmp_path / "seed-3.weights.safetensors")
    fresh, _ = tiny.build(config, seed=3)  # same config and seed: same frozen backbone
    load_trained_weights(fresh.model, path)
    batch = task.collate("test", list(range(task.num_examples("test"))), trained.modalities)
    trained.model.eval()
    fresh.model.eval()
    with torch.no_grad():
        assert torch.equal(trained.model(batch), fresh.model(batch))
    other_seed, _ = tiny.build(config, seed=4)  # a different frozen backbone does not give them back
    load_trained_weights(other_seed.model, path)
    other_seed.model.eval()
    with torch.no_grad():
        assert not torch.allclose(trained.model(batch), other_seed.model(batch))


def test_peft_run_saves_only_trained_weights_and_they_reproduce_its_predictions(cache_dir, tmp_path, one_thread):
    from safetensors.torch import load_file

    from vlbench.cli.main import main
    from vlbench.peft.checkpoint import load_run_model

    args = ["run", "--task", "vqa", "--baseline", "vilt-lora", "--results-dir", str(tmp_path), "--max-steps", "4",
            "--batch-size", "16", "--quiet", *TINY_DATA, "--set", "baseline.config.hidden_size=32",
            "--set", "baseline.config.num_heads=2", "--set", "baseline.config.num_layers=1",
            "--set", "baseline.config.intermediate_size=64"]
    assert main(args) == 0
    record_file = tmp_path / "vqa" / "shapes" / "vilt-lora" / "seed-0.json"
    record = json.loads(record_file.read_text())
    assert record["weights_file"] == "seed-0.weights.safetensors"
    saved = load_file(str(record_file.parent / record["weights_file"]))
    assert sum(t.numel() for t in saved.values()) == record["parameters"]["trainable"]
    assert all(".lora_" in n or n.startswith("head.") for n in saved)
    assert record["parameters"]["trainable"] < 0.2 * record["parameters"]["total"]
    assert record["peft"]["method"] == "lora" and record["peft"]["adapted_layers"] == 2  # query and value
    model, task, _ = load_run_model(record_file, cache_dir=cache_dir)
    result = task.evaluate(model, "test", 64, ("text", "image"), torch.device("cpu"))
    expected = json.loads((record_file.parent / record["predictions_file"]).read_text())
    assert result.predictions == expected
    assert result.per_example == record["per_example"]["test"]
    # a record written before `metrics:` was removed from task specs still loads
    record["config"]["task"]["metrics"] = ["vqa_accuracy"]
    record_file.write_text(json.dumps(record))
    assert load_run_model(record_file, task=task)[1] is task


@pytest.mark.parametrize(
    "peft, message",
    [
        ({"method": "lorra"}, "Did you mean 'lora'"),
        ({"method": "lora", "r": 0}, "peft.r"),
        ({"method": "adapter", "variant": "bottleneck"}, "peft.variant"),
        ({"method": "bitfit", "rank": 3}, "peft.rank"),
        ("lora", "expected a mapping"),
    ],
)
def test_bad_peft_blocks_are_one_clear_line(peft, message):
    from vlbench.peft.config import parse_peft

    with pytest.raises(SpecError) as info:
        parse_peft(peft, "baseline 'x'")
    assert message in str(info.value) and "baseline 'x'" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_lora_targets_that_match_nothing_name_the_layers(tiny):
    with pytest.raises(SpecError, match="query"):
        tiny.build(tiny.config("vilt", config=VILT_SMALL, peft={"method": "lora", "target_modules": ["qkv_proj"]}))


def test_bad_peft_block_fails_the_cli_before_training(tmp_path, capsys):
    from vlbench.cli.main import main

    code = main(["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(tmp_path), *TINY_DATA,
                 "--set", "baseline.peft.method=lorra"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Did you mean 'lora'" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.rglob("*.json"))
