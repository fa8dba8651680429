"""Training precision: what ``auto`` resolves to, that bf16 autocast really runs, and what records say."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.errors import VLBenchError
from vlbench.training import device as device_mod
from vlbench.training.device import autocast, grad_scaler, native_bf16, resolve_precision, tf32_matmuls

CPU = torch.device("cpu")


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_is_bf16_only_on_cpus_that_compute_it_natively(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert native_bf16(CPU) is (expected == "bf16")
    assert resolve_precision("auto", CPU) == expected


def test_auto_on_cuda_ignores_emulated_bf16_and_takes_fp16_there(monkeypatch):
    # pre-Ampere GPUs (T4, V100) "support" bf16 only through emulation, slower than fp32; their tensor cores do fp16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_explicit_precision_is_kept_and_mps_bf16_and_cpu_fp16_refused():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(VLBenchError, match="mps"):
        resolve_precision("bf16", torch.device("mps"))
    with pytest.raises(VLBenchError, match="fp16.*CUDA"):
        resolve_precision("fp16", CPU)


def test_fp16_gets_a_gradient_scaler_and_others_none():
    with warnings.catch_warnings():  # without a GPU here, torch warns that the scaler would be disabled
        warnings.simplefilter("ignore")
        scaler = grad_scaler("fp16", torch.device("cuda"))
    assert isinstance(scaler, torch.amp.GradScaler)
    assert grad_scaler("bf16", CPU) is None and grad_scaler("fp32", torch.device("cuda")) is None


def test_tf32_is_on_only_inside_the_training_block_and_only_on_cuda():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with tf32_matmuls(True, CPU) as used:
        assert used is False and (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with tf32_matmuls(True, torch.device("cuda")) as used:  # the switches exist without a GPU
        assert used is True and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with tf32_matmuls(False, torch.device("cuda")):
        assert not torch.backends.cuda.matmul.allow_tf32


def test_fp16_from_the_command_line_on_a_cpu_is_one_clear_error(tmp_path, capsys):
    code = main(["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(tmp_path), "--max-steps", "1",
                 "--quiet", "--device", "cpu", "--precision", "fp16", *TINY_DATA])
    assert code == 2
    err = capsys.readouterr().err
    assert "fp16" in err and "CUDA" in err and "Traceback" not in err


def test_autocast_context_computes_in_the_resolved_dtype():
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with autocast("bf16", CPU):
        assert layer(x).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert layer(x).dtype == torch.float32
    assert device_mod.autocast is autocast


def test_runs_record_their_precision_and_bf16_changes_the_numbers(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("VLBENCH_CACHE", str(cache_dir))
    small = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
             "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
    records = {}
    for precision in ("fp32", "bf16"):
        results = tmp_path / precision
        assert main(["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(results), "--max-steps", "3",
                     "--quiet", "--precision", precision, *TINY_DATA, *small]) == 0
        records[precision] = json.loads((results / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())
    fp32, bf16 = records["fp32"], records["bf16"]
    assert fp32["training"]["precision"] == "fp32" and bf16["training"]["precision"] == "bf16"
    assert fp32["config"]["training"]["precision"] == "fp32"
    assert fp32["config_hash"] != bf16["config_hash"]
    # same seed, same data: only the compute precision differs, and it shows in the loss
    loss32 = fp32["training"]["history"][0]["train_loss"]
    loss16 = bf16["training"]["history"][0]["train_loss"]
    assert loss32 != loss16 and abs(loss32 - loss16) < 0.05 * abs(loss32)
