"""Scores do not depend on how evaluation was batched: every task type at evaluation batch 1 and at its default.

Each case trains a small model two steps on the embedded data, then scores the test split with batch 1 and with
the task's default evaluation batch: metrics, item scores and predictions must be equal (metrics to 1e-9), and
the model's raw outputs (answer logits, similarity matrix, generated sequences' log-probabilities) must agree to
float precision, which a padding leak or a batch-dependent normalisation would break even where predictions
happen to agree. Then the `--check-eval-invariance` record block, and a check that fails when scores differ.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import TINY_DATA

TINY = {"train_images": 24, "val_images": 6, "test_images": 8}
SMALL = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64}
DECODER = {"decoder": {"num_layers": 1, "num_heads": 2, "intermediate_size": 64}, "max_target_length": 12, "beam_size": 2}
RETRIEVAL = {"hidden_size": 16, "text_layers": 1, "image_layers": 1, "num_heads": 2, "intermediate_size": 32}
CASES = [  # (task, baseline, model settings, task options)
    ("vqa", "vilt", {**SMALL, "num_layers": 1}, {}),
    ("vqa", "text-bert", {**SMALL, "num_layers": 1}, {}),
    ("vqa", "film", None, {}),
    ("vqa", "coattention", {**SMALL, "num_layers": 1}, {}),
    ("retrieval", "retrieval-dual", RETRIEVAL, {"embed_dim": 8}),
    ("retrieval", "retrieval-cross", {**RETRIEVAL, "top_k": 2}, {"embed_dim": 8}),
    ("retrieval", "retrieval-two-stage", {**RETRIEVAL, "top_k": 2}, {"embed_dim": 8}),
    ("captioning", "captioner-vilt", {**SMALL, "num_layers": 1}, DECODER),
    ("vmt", "mt-text", {**SMALL, "num_layers": 1}, DECODER),
    ("vmt", "mmt-vilt", {**SMALL, "num_layers": 1}, DECODER),
]


def _build(task_name, baseline, settings, options, cache_dir):
    """The runner's model for a shipped baseline on tiny data, trained two steps, and its task."""
    from vlbench.models.pretrained import load_tokenizer
    from vlbench.peft.assemble import assemble
    from vlbench.registry import TASK_TYPES
    from vlbench.runner import load_dataset
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    spec = load_task_spec(task_name)
    spec = spec.model_copy(update={"data": dict(TINY), "options": {**spec.options, **options}})
    dataset = load_dataset("shapes", spec.data, cache_dir, quiet=True)
    task = TASK_TYPES.get(spec.type)(spec, dataset)
    tokenizer = load_tokenizer(None, task.training_texts())
    task.prepare(tokenizer)
    base = load_baseline_spec(baseline)
    if settings is not None:
        base = base.model_copy(update={"config": {**base.config, **settings}})
    config = resolve_run_config(spec, base)
    assembled = assemble(config, 0, task, tokenizer, pretrained=None, data_fingerprint=dataset.fingerprint)
    model = assembled.model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(2):
        batch = task.collate("train", list(range(step * 8, step * 8 + 8)), assembled.modalities)
        loss = task.loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), task, assembled.modalities, config.training.eval_batch_size


def _raw_outputs(task, model, modalities, batch_size):
    """What the predictions are made from, at one evaluation batch size."""
    from vlbench.tasks.generation.search import generate, sequence_log_prob

    n = task.num_examples("test")
    chunks = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    with torch.no_grad():
        if task.spec.type == "vqa":
            return torch.cat([model(task.collate("test", c, modalities)) for c in chunks])
        if task.spec.type == "retrieval":
            return torch.as_tensor(task.similarity(model, "test", batch_size, modalities, torch.device("cpu"))[0])
        scores = []  # generation: the log-probability of each generated sequence, as the batch computed it
        for c in chunks:
            batch = task.collate("test", c, modalities)
            out = generate(model, batch, beam_size=task.options.beam_size, max_length=task.options.max_target_length - 1,
                           length_penalty=task.options.length_penalty, vocab=task.vocab)
            scores.append(sequence_log_prob(model, batch, out.tokens, task.vocab.EOS))
        return torch.cat(scores)


@pytest.mark.parametrize("task_name, baseline, settings, options", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_scores_are_the_same_at_batch_1_and_at_the_default_batch(task_name, baseline, settings, options, cache_dir):
    torch.set_num_threads(1)
    model, task, modalities, default = _build(task_name, baseline, settings, options, cache_dir)
    assert default > 1
    device = torch.device("cpu")
    batched = task.evaluate(model, "test", default, modalities, device)
    single = task.evaluate(model, "test", 1, modalities, device)
    assert set(batched.metrics) == set(single.metrics)
    for name, value in batched.metrics.items():
        assert single.metrics[name] == pytest.approx(value, abs=1e-9), name
    assert batched.per_example == single.per_example and len(batched.per_example) > 0
    if task_name != "retrieval":  # a similarity matrix is compared below, to float precision
        assert batched.predictions == single.predictions
    raw_batched, raw_single = _raw_outputs(task, model, modalities, default), _raw_outputs(task, model, modalities, 1)
    assert raw_batched.std() > 0  # the outputs depend on the input: the comparison is not between constants
    assert torch.allclose(raw_batched, raw_single, rtol=1e-4, atol=1e-5), float((raw_batched - raw_single).abs().max())


def test_the_check_reports_scores_that_depend_on_the_batch():
    from vlbench.results.invariance import invariance_block

    reference = SimpleNamespace(metrics={"accuracy": 50.0}, per_example={"1": 1.0, "2": 0.0})
    same = invariance_block(reference, 256, lambda b: SimpleNamespace(metrics={"accuracy": 50.0},
                                                                       per_example={"1": 1.0, "2": 0.0}))
    assert same["invariant"] and same["batch_sizes"] == [256, 1] and same["items_differing"] == 0
    moved = invariance_block(reference, 256, lambda b: SimpleNamespace(metrics={"accuracy": 50.0},
                                                                        per_example={"1": 0.0, "2": 1.0}))
    assert not moved["invariant"] and moved["items_differing"] == 2 and moved["examples"] == ["1", "2"]
    drift = invariance_block(reference, 256, lambda b: SimpleNamespace(metrics={"accuracy": 50.0 + 1e-6},
                                                                        per_example={"1": 1.0, "2": 0.0}))
    assert not drift["invariant"] and drift["metrics_differing"] == ["accuracy"]
    assert drift["max_metric_difference"] == pytest.approx(1e-6)


def test_run_records_the_check(tmp_path, capsys):
    from vlbench.cli.main import main

    args = ["run", "--task", "vqa", "--baseline", "vilt", "--results-dir", str(tmp_path), "--max-steps", "1",
            "--quiet", *TINY_DATA, "--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
            "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
    assert main(args) == 0
    path = tmp_path / "vqa" / "shapes" / "vilt" / "seed-0.json"
    assert json.loads(path.read_text())["eval_invariance"] is None  # not asked for
    capsys.readouterr()
    # asked for on a finished run whose record lacks it: the run is done again, and the record holds the check
    assert main([*args, "--check-eval-invariance"]) == 0
    record = json.loads(path.read_text())
    block = record["eval_invariance"]
    assert block["invariant"] is True and block["items"] > 0
    assert block["batch_sizes"] == [record["config"]["training"]["eval_batch_size"], 1]
    assert main(["validate", str(tmp_path)]) == 0


def test_tables_warn_about_a_run_whose_scores_depend_on_the_batch():
    from tests.results_fixtures import make_record
    from vlbench.results.table import aggregate, render

    records = [make_record("vilt", s) for s in range(2)]
    assert "changed when scored one example per batch" not in render(aggregate(records), "md")
    records[1]["eval_invariance"] = {"batch_sizes": [256, 1], "invariant": False, "items_differing": 3}
    assert "the test scores of vilt seed 1 changed when scored one example per batch" in render(aggregate(records), "md")
