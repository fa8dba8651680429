"""The training loop: gradient accumulation, non-finite losses, released models, compile, determinism, loaders."""

from __future__ import annotations

import gc
import pickle
import traceback
import weakref

import pytest
import torch

from tests.training_fixtures import Regressor, RegressionTask, StepSpy, config, params
from vlbench.errors import TrainingError
from vlbench.tasks.base import BatchCollator
from vlbench.training.device import get_accelerator, set_deterministic
from vlbench.training.trainer import CHECK_EVERY, fit


@pytest.fixture(scope="module")
def accelerator():
    return get_accelerator("cpu")


def _fit(task, cfg, accelerator, seed=0, **kwargs):
    model = Regressor(seed)
    result = fit(model, task, cfg, accelerator=accelerator, seed=seed, modalities=(), **kwargs)
    return model, result


@pytest.mark.parametrize("n_train", [64, 60])
def test_accumulated_micro_batches_equal_one_large_batch(accelerator, n_train):
    # 60 rows: each epoch's second group is 8+8+8+4 = 28 rows, weighted by its true size
    task = RegressionTask(n_train=n_train)
    with StepSpy() as big:
        model_big, result_big = _fit(task, config(epochs=2, batch_size=32, grad_clip=None), accelerator)
    with StepSpy() as small:
        model_small, result_small = _fit(task, config(epochs=2, batch_size=8, grad_accum_steps=4, grad_clip=None),
                                         accelerator)
    assert result_big.steps == result_small.steps == 4  # two optimizer steps per epoch in both
    assert result_small.grad_accum_steps == 4 and result_small.settings()["grad_accum_steps"] == 4
    assert big.lrs == small.lrs  # the schedule counts optimizer steps, not micro-batches
    for grads_big, grads_small in zip(big.grads, small.grads):
        for a, b in zip(grads_big, grads_small):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for a, b in zip(params(model_big), params(model_small)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert result_small.history[-1]["train_loss"] == pytest.approx(result_big.history[-1]["train_loss"], rel=1e-6)


def test_accumulation_with_clipping_clips_the_group_gradient(accelerator):
    task = RegressionTask(n_train=32)
    with StepSpy() as big:
        _fit(task, config(epochs=1, batch_size=32, grad_clip=0.05), accelerator)
    with StepSpy() as small:
        _fit(task, config(epochs=1, batch_size=8, grad_accum_steps=4, grad_clip=0.05), accelerator)
    norm_big = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in big.grads[0]]))
    assert float(norm_big) == pytest.approx(0.05, rel=1e-4)  # clipped: the raw norm is far above
    for a, b in zip(big.grads[0], small.grads[0]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


class _BreaksAt(RegressionTask):
    """The loss turns NaN from a given training step on; every finite loss is kept for reference."""

    def __init__(self, bad_step: int) -> None:
        super().__init__(n_train=256)
        self.bad_step, self.calls, self.losses = bad_step, 0, []

    def loss(self, outputs, batch):
        value = super().loss(outputs, batch)
        if outputs.requires_grad:  # training, not validation
            self.calls += 1
            if self.calls >= self.bad_step:
                return value * float("nan")
            self.losses.append(float(value.detach()))
        return value


def test_non_finite_loss_names_its_first_step_and_the_last_finite_loss(accelerator):
    task = _BreaksAt(bad_step=CHECK_EVERY + 3)  # found at the look after step 20, reported as step 13
    with pytest.raises(TrainingError) as caught:
        _fit(task, config(epochs=1, batch_size=8), accelerator)
    error = caught.value
    assert error.step == CHECK_EVERY + 3
    assert error.last_finite_loss == pytest.approx(task.losses[-1], rel=1e-6)
    assert len(task.losses) == CHECK_EVERY + 2
    assert "step 13" in str(error) and "lower learning rate (--lr" in str(error) and "--lr" in error.hint
    assert task.calls < 2 * CHECK_EVERY + 1  # it stopped at the next look, not at the end of the epoch


def test_a_first_step_nan_has_no_last_finite_loss(accelerator):
    with pytest.raises(TrainingError) as caught:
        _fit(_BreaksAt(bad_step=1), config(epochs=1, batch_size=8), accelerator)
    assert caught.value.step == 1 and caught.value.last_finite_loss is None


def test_no_model_outlives_its_run(accelerator):
    task = RegressionTask(n_train=32)
    refs = []
    for seed in range(3):
        model, _ = _fit(task, config(epochs=1, batch_size=8), accelerator, seed=seed)
        refs.append(weakref.ref(model))
        del model
        assert accelerator._models == [] and accelerator._optimizers == [] and accelerator._dataloaders == []
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_a_failed_run_releases_its_model_too(accelerator):
    task = _BreaksAt(bad_step=2)
    model = Regressor()
    with pytest.raises(TrainingError):
        fit(model, task, config(epochs=1, batch_size=8), accelerator=accelerator, seed=0, modalities=())
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert accelerator._models == [] and ref() is None


def test_collate_is_picklable_and_workers_give_the_same_training(accelerator):
    task = RegressionTask(n_train=48)
    collate = pickle.loads(pickle.dumps(BatchCollator(task, "train", ())))
    batch = collate([3, 1, 2])
    assert batch["index"].tolist() == [3, 1, 2] and torch.equal(batch["x"], task.x["train"][[3, 1, 2]])
    model0, result0 = _fit(task, config(epochs=2, num_workers=0), accelerator)
    model2, result2 = _fit(task, config(epochs=2, num_workers=2), accelerator)
    assert [h["train_loss"] for h in result0.history] == [h["train_loss"] for h in result2.history]
    for a, b in zip(params(model0), params(model2)):
        assert torch.equal(a, b)
    task.set_loading(0)


def test_compile_trains_through_a_dynamo_graph(accelerator):
    from torch._dynamo import list_backends, register_backend

    graphs = []
    if "vlbench_test_counting" not in list_backends(exclude_tags=()):
        @register_backend(name="vlbench_test_counting")
        def _counting(gm, example_inputs):
            graphs.append(gm)
            return gm.forward
    task = RegressionTask(n_train=32)
    plain_model, plain = _fit(task, config(epochs=1), accelerator)
    compiled_model, compiled = _fit(task, config(epochs=1, compile=True, compile_backend="vlbench_test_counting"),
                                    accelerator)
    assert graphs, "torch.compile captured no graph"
    assert compiled.compiled and not plain.compiled and compiled.settings()["compile"] is True
    for a, b in zip(params(plain_model), params(compiled_model)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_an_unknown_compile_backend_is_a_clear_error(accelerator):
    with pytest.raises(Exception) as caught:
        _fit(RegressionTask(n_train=16), config(epochs=1, compile=True, compile_backend="no-such-backend"), accelerator)
    assert "no-such-backend" in str(caught.value)
    assert isinstance(caught.value, TrainingError) and caught.value.hint == "--no-compile"
    assert accelerator._models == []


def test_deterministic_switches_torch_to_deterministic_algorithms(accelerator, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    task = RegressionTask(n_train=32)
    try:
        model_a, result = _fit(task, config(epochs=1, deterministic=True), accelerator)
        assert result.deterministic and torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        model_b, _ = _fit(task, config(epochs=1, deterministic=False), accelerator)
        assert not torch.are_deterministic_algorithms_enabled()
        for a, b in zip(params(model_a), params(model_b)):
            assert torch.equal(a, b)  # on a CPU both are deterministic already
    finally:
        set_deterministic(False)


def test_losses_stay_on_the_device_between_looks(accelerator, monkeypatch):
    # every host read of a tensor value (item, tolist, float, bool) waits for the device; count them, except
    # AdamW's step counters, which torch keeps on the host on every device so that reading them is free
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            caller = traceback.extract_stack(limit=2)[0].filename.replace("\\", "/")
            if "torch/optim/" not in caller:
                reads.append(caller)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    counts = {}
    for steps in (2 * CHECK_EVERY, 6 * CHECK_EVERY):
        reads.clear()
        _, result = _fit(RegressionTask(n_train=8 * steps), config(epochs=1, batch_size=8), accelerator)
        assert result.steps == steps
        counts[steps] = len(reads)
    monkeypatch.undo()
    # 4 * CHECK_EVERY more steps cost 4 more looks, not one read per step
    assert counts[6 * CHECK_EVERY] - counts[2 * CHECK_EVERY] == 4


def test_min_steps_raises_the_epochs_of_a_small_training_set_and_spaces_validation(accelerator):
    task = RegressionTask(n_train=64)  # 2 steps per epoch at batch 32
    _, plain = _fit(task, config(epochs=3, batch_size=32, patience=0), accelerator)
    assert plain.steps == 6 and plain.epochs == 3 and plain.eval_every_epochs == 1
    _, floored = _fit(task, config(epochs=3, batch_size=32, patience=0, min_steps=20), accelerator)
    assert floored.steps == 20 and floored.epochs == 10
    # validated every ceil(10 / 3) = 4 epochs and at the last: as many passes as 3 epochs would give
    validated = [h["epoch"] for h in floored.history if "validation" in h]
    assert validated == [4, 8, 10] and floored.eval_every_epochs == 4
    assert floored.settings()["epochs_planned"] == 10
    # a training set already large enough is untouched
    _, large = _fit(task, config(epochs=3, batch_size=32, patience=0, min_steps=4), accelerator)
    assert large.steps == 6 and [h["epoch"] for h in large.history if "validation" in h] == [1, 2, 3]
    # max_steps still caps
    _, capped = _fit(task, config(epochs=3, batch_size=32, patience=0, min_steps=20, max_steps=9), accelerator)
    assert capped.steps == 9


def test_min_steps_enters_the_config_hash_only_when_set():
    from vlbench.specs import config_hash, load_baseline_spec, load_task_spec, resolve_run_config

    task, baseline = load_task_spec("vqa"), load_baseline_spec("text-bert")
    plain = resolve_run_config(task, baseline)
    floored = resolve_run_config(task, baseline, training_overrides={"min_steps": 500})
    unset = resolve_run_config(task, baseline, training_overrides={"min_steps": None})
    assert config_hash(plain) == config_hash(unset) != config_hash(floored)


def test_patience_counts_validation_passes_not_epochs(accelerator):
    task = RegressionTask(n_train=64)
    # min_delta so large that no validation after the first improves: every later pass is a bad one
    _, result = _fit(task, config(epochs=20, batch_size=32, eval_every_epochs=3, patience=2, min_delta=1e9), accelerator)
    validated = [h["epoch"] for h in result.history if "validation" in h]
    # best at epoch 3, bad passes at 6 and 9: stopped after two passes (six epochs), not after two epochs
    assert validated == [3, 6, 9] and result.history[-1]["epoch"] == 9
    assert result.stopped_early and result.best_epoch == 3
