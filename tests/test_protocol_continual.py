"""Continual learning: metric definitions, EWC's Fisher and penalty, the reservoir memory, stage views, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vlbench.cli.main import main
from vlbench.protocols.continual.ewc import Anchor, diagonal_fisher, ewc_penalty
from vlbench.protocols.continual.memory import ReservoirMemory
from vlbench.protocols.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarize,
)

# R[i][j]: score on stage j after training stages 0..i; b[j]: the random model's score
R = [[50.0, 10.0, 20.0],
     [40.0, 60.0, 30.0],
     [30.0, 50.0, 70.0]]
B = [5.0, 10.0, 20.0]


def test_metrics_match_hand_computed_values():
    assert average_accuracy(R) == pytest.approx((30 + 50 + 70) / 3)
    assert backward_transfer(R) == pytest.approx(((30 - 50) + (50 - 60)) / 2)
    assert forward_transfer(R, B) == pytest.approx(((10 - 10) + (30 - 20)) / 2)
    # stage 0: best before the end max(50, 40) = 50, final 30; stage 1: best 60, final 50
    assert forgetting(R) == pytest.approx(((50 - 30) + (60 - 50)) / 2)
    assert summarize([[42.0]], [1.0]) == {"average_accuracy": 42.0, "backward_transfer": None,
                                           "forward_transfer": None, "forgetting": None}
    with pytest.raises(ValueError):
        average_accuracy([[1.0, 2.0]])


def test_no_forgetting_matrix_has_zero_bwt_and_forgetting():
    upper = [[80.0, 0.0], [80.0, 90.0]]
    assert backward_transfer(upper) == 0.0 and forgetting(upper) == 0.0
    assert forward_transfer(upper, [0.0, 0.0]) == 0.0


def _linear():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.bias.fill_(0.5)
    return model


def _squared_loss(model, batch):
    return 0.5 * ((model(batch["x"]).squeeze(-1) - batch["t"]) ** 2).sum()


def test_fisher_and_penalty_match_hand_computed_values():
    model = _linear()
    examples = [{"x": torch.tensor([[1.0, 2.0]]), "t": torch.tensor([0.0])},
                {"x": torch.tensor([[0.0, 1.0]]), "t": torch.tensor([1.0])}]
    fisher = diagonal_fisher(model, examples, _squared_loss)
    # residuals -0.5 and -1.5; per-example gradients r*x and r; Fisher = mean of their squares
    assert torch.allclose(fisher["weight"], torch.tensor([[0.125, 1.625]]))
    assert torch.allclose(fisher["bias"], torch.tensor([1.25]))
    anchor = Anchor(fisher, {n: p.detach().clone() for n, p in model.named_parameters()})
    assert ewc_penalty(model, [anchor], 2.0).item() == pytest.approx(0.0)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, -1.0]]))
        model.bias.fill_(0.0)
    penalty = ewc_penalty(model, [anchor], 2.0)
    assert penalty.item() == pytest.approx(0.5 * 2.0 * (0.125 * 1.0 + 1.25 * 0.25))
    penalty.backward()
    assert torch.allclose(model.weight.grad, torch.tensor([[2.0 * 0.125 * 1.0, 0.0]]))
    assert ewc_penalty(model, [anchor, anchor], 2.0).item() == pytest.approx(2 * penalty.item())


def test_reservoir_is_bounded_and_uniform():
    memory = ReservoirMemory(10, seed=0)
    for item in range(1000):
        memory.offer(item)
        assert len(memory) == min(item + 1, 10)
    assert memory.seen == 1000 and len(set(memory.items)) == 10
    trials, stream, capacity = 2000, 50, 10
    counts = np.zeros(stream)
    for seed in range(trials):
        memory = ReservoirMemory(capacity, seed=seed)
        memory.extend(range(stream))
        counts[memory.items] += 1
    expected = trials * capacity / stream  # every item kept with probability capacity / stream
    sd = np.sqrt(trials * (capacity / stream) * (1 - capacity / stream))
    assert np.all(np.abs(counts - expected) < 5 * sd)
    assert abs(counts[:25].mean() - counts[25:].mean()) < 3 * sd / np.sqrt(25) * np.sqrt(2)
    assert ReservoirMemory(3).sample(4) == []


STAGE_DATA = ["--set", "task.data.train_images=300", "--set", "task.data.val_images=60", "--set", "task.data.test_images=60"]
SMALL = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
         "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def test_stage_views_select_each_family_and_share_one_label_space(tmp_path):
    from vlbench.protocols.continual.sequence import load_sequence, stage_view
    from vlbench.runner import load_dataset
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    dataset = load_dataset("shapes", {"train_images": 300, "val_images": 60, "test_images": 60}, tmp_path, quiet=True)
    sequence = load_sequence("shapes-families")
    spec = load_task_spec("vqa")
    for stage in sequence.stages:
        view = stage_view(dataset, [stage], ["train", "val", "test"], stage.name)
        for split in ("train", "val", "test"):
            types = dataset.split("vqa", split)["question_type"]
            kept = view.split("vqa", split)["question_type"]
            assert set(kept) == set(stage.where["question_type"])
            assert len(kept) == sum(t in stage.where["question_type"] for t in types)
    union = stage_view(dataset, sequence.stages, ["train", "val", "test"], "all")
    assert len(union.split("vqa", "train")) == len(dataset.split("vqa", "train"))
    assert len(VQATask(spec, union).answers) > len(VQATask(spec, stage_view(dataset, sequence.stages[:1],
                                                                               ["train", "val", "test"], "c")).answers)


def test_continual_command_writes_stage_records_summaries_and_heat_maps(tmp_path, capsys):
    results = tmp_path / "cl"
    args = ["continual", "--sequence", "shapes-families", "--baseline", "text-bert", "--seeds", "0", "--max-steps", "2",
            "--fisher-samples", "4", "--memory-size", "16", "--results-dir", str(results), "--quiet", *STAGE_DATA, *SMALL]
    assert main(args) == 0
    out = capsys.readouterr().out
    stages = ["color", "shape", "count", "exist", "relation"]
    folder = results / "shapes-families"
    for strategy in ("naive", "ewc", "replay", "heads", "isolated", "joint"):
        summary = json.loads((folder / "summaries" / f"text-bert.{strategy}.s0.json").read_text())
        matrix = summary["matrix"]
        assert summary["stages"] == stages and summary["status"] == "ok"
        assert len(matrix) == (1 if strategy == "joint" else 5) and all(len(row) == 5 for row in matrix)
        assert summary["metrics"]["average_accuracy"] == pytest.approx(sum(matrix[-1]) / 5)
        if strategy != "joint":
            expected_bwt = sum(matrix[4][j] - matrix[j][j] for j in range(4)) / 4
            assert summary["metrics"]["backward_transfer"] == pytest.approx(expected_bwt)
            for i, name in enumerate(stages):
                record = json.loads((folder / strategy / f"stage-{i + 1}-{name}" / "vqa" / "shapes" / "text-bert"
                                     / "seed-0.json").read_text())
                assert record["status"] == "ok" and record["continual"]["stage"] == name
                assert record["test"]["metrics"]["accuracy"] == pytest.approx(matrix[i][i])
                assert record["data"]["sizes"]["test"] == len(record["per_example"]["test"])
        assert (folder / f"heatmap-text-bert-{strategy}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"| text-bert | {strategy} |" in out
    assert (folder / "continual-table.md").is_file()
    assert main(["validate", str(folder)]) == 0  # the stage records are ordinary, schema-valid run records
    assert main(args) == 0 and "| text-bert | naive |" in capsys.readouterr().out  # second call: skipped, same table
    before = json.loads((folder / "summaries" / "text-bert.naive.s0.json").read_text())["config_hash"]
    changed = [*args, "--strategy", "naive", "--lr", "0.002"]
    assert main(changed) == 0
    kept = folder / "summaries" / f"text-bert.naive.s0.cfg-{before}.json"
    assert kept.is_file()  # the earlier config's summary is kept, not replaced
    assert json.loads((folder / "summaries" / "text-bert.naive.s0.json").read_text())["config_hash"] != before
    assert list((folder / "naive" / "stage-1-color" / "vqa" / "shapes" / "text-bert").glob("seed-0.cfg-*.json"))


@pytest.mark.parametrize("extra, needle", [
    (["--sequence", "shapes-famlies", "--baseline", "text-bert"], "Unknown sequence"),
    (["--sequence", "shapes-families", "--baseline", "text-bert", "--strategy", "gem"], "--strategy 'gem'"),
    (["--sequence", "shapes-families", "--baseline", "prior"], "trainable"),
])
def test_bad_continual_input_is_one_error_line(extra, needle, tmp_path, capsys):
    assert main(["continual", "--results-dir", str(tmp_path), "--quiet", *STAGE_DATA, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def test_heads_strategy_scores_each_stage_with_its_own_head_and_restores_the_current_one():
    from vlbench.protocols.continual.strategies import StrategySettings, make_strategy

    class _Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)
            self.head = nn.Linear(2, 1)

    class _Task:
        def evaluate(self, model, split, batch_size, modalities, device):
            return float(model.head.bias.detach())

    model = _Wrapped()
    with torch.no_grad():
        model.head.bias.fill_(0.0)
    strategy = make_strategy("heads", model, [_Task(), _Task()], ("text",), torch.device("cpu"), StrategySettings(), 4, 0)
    for stage, value in ((0, 1.0), (1, 2.0)):
        strategy.before_stage(stage)
        with torch.no_grad():
            model.head.bias.fill_(value)
            model.encoder.bias.fill_(10 * value)  # the shared encoder is never swapped
        strategy.after_stage(stage)
    assert strategy.evaluate(0, "test", 8) == 1.0 and strategy.evaluate(1, "test", 8) == 2.0
    assert float(model.head.bias.detach()) == 2.0 and torch.all(model.encoder.bias == 20.0)


def test_isolated_strategy_gives_each_stage_its_own_trainable_weights_and_buffers_over_a_shared_frozen_backbone():
    from vlbench.protocols.continual.strategies import StrategySettings, make_strategy

    class _Adapted(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)  # the frozen backbone
            self.encoder.requires_grad_(False)
            self.adapter = nn.Linear(2, 2)
            self.norm = nn.BatchNorm1d(2)  # its running statistics move even when nothing upstream trains

    class _Task:
        def evaluate(self, model, split, batch_size, modalities, device):
            return (float(model.adapter.bias.detach()[0]), float(model.norm.running_mean[0]))

    model = _Adapted()
    backbone = model.encoder.weight.detach().clone()
    strategy = make_strategy("isolated", model, [_Task(), _Task(), _Task()], ("text",), torch.device("cpu"),
                             StrategySettings(), 4, 0)
    initial = float(model.adapter.bias.detach()[0])
    for stage, value in ((0, 1.0), (1, 2.0)):
        strategy.before_stage(stage)
        assert float(model.adapter.bias.detach()[0]) == initial  # every stage starts from the initial trainable weights
        with torch.no_grad():
            model.adapter.bias.fill_(value)
            model.norm.running_mean.fill_(value)
        strategy.after_stage(stage)
    assert strategy.evaluate(0, "test", 8) == (1.0, 1.0) and strategy.evaluate(1, "test", 8) == (2.0, 2.0)
    assert strategy.evaluate(2, "test", 8) == (initial, 0.0)  # a stage not trained yet: the initial weights
    assert float(model.adapter.bias.detach()[0]) == 2.0  # the current stage's weights are back after scoring others
    assert torch.equal(model.encoder.weight, backbone)
    assert "encoder.weight" not in strategy.heads[0] and "adapter.weight" in strategy.heads[0]
