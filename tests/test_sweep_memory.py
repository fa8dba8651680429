"""A sweep does not keep its models: after `vlbench run` over several baselines, none of them is alive."""

from __future__ import annotations

import gc
import weakref

from tests.conftest import TINY_DATA
from vlbench.runner import one_run
from vlbench.cli.main import main
from vlbench.training.device import get_accelerator

SMALL_MODEL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
               "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def test_no_model_survives_its_run_in_a_sweep(tmp_path, monkeypatch):
    models, held_during = [], []
    original_fit = one_run.fit

    def watching_fit(model, *args, **kwargs):
        models.append(weakref.ref(model))
        held_during.append(len(get_accelerator("auto")._models))
        return original_fit(model, *args, **kwargs)

    monkeypatch.setattr(one_run, "fit", watching_fit)
    code = main(["run", "--task", "vqa", "--baseline", "text-bert", "--baseline", "vilt", "--seeds", "0,1",
                 "--results-dir", str(tmp_path), "--max-steps", "2", "--quiet", *TINY_DATA, *SMALL_MODEL])
    assert code == 0
    assert len(models) == 4 and held_during == [0, 0, 0, 0]  # each run starts with nothing left from the last
    gc.collect()
    assert [ref() for ref in models] == [None] * 4
    assert get_accelerator("auto")._models == [] and get_accelerator("auto")._optimizers == []
