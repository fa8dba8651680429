"""Training precision: what ``auto`` resolves to, that bf16 autocast really runs, and what records say."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.errors import VLBenchError
from vlbench.training import device as device_mod
from vlbench.training.device import autocast, native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")])
def test_auto_is_bf16_only_on_cpus_that_compute_it_natively(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert native_bf16(CPU) is (expected == "bf16")
    assert resolve_precision("auto", CPU) == expected


def test_auto_on_cuda_ignores_emulated_bf16(monkeypatch):
    # pre-Ampere GPUs "support" bf16 only through emulation, slower than fp32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_explicit_precision_is_kept_and_mps_bf16_refused():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(VLBenchError, match="mps"):
        resolve_precision("bf16", torch.device("mps"))


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
