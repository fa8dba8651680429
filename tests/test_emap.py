"""EMAP (Hessel & Lee 2020): the projection against loops, additive and XOR models, the VQA task's pairs, a run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import TINY_DATA
from vlbench.tasks.emap import AdditiveProjection, additive_projection, emap_block, emap_items, emap_scores, pair_chunks


def _brute_force(f: torch.Tensor) -> torch.Tensor:
    """f̂(t_i, v_i) = mean_j f(t_i, v_j) + mean_j f(t_j, v_i) − mean_{j,k} f(t_j, v_k), written as loops."""
    n, c = f.shape[0], f.shape[2]
    out = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        for a in range(c):
            text = sum(float(f[i, j, a]) for j in range(n)) / n
            image = sum(float(f[j, i, a]) for j in range(n)) / n
            grand = sum(float(f[j, k, a]) for j in range(n) for k in range(n)) / (n * n)
            out[i, a] = text + image - grand
    return out


@pytest.mark.parametrize("seed", range(3))
def test_projection_equals_loops_in_any_order_and_batching(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(4, 4, 3, generator=g, dtype=torch.float64)
    reference = _brute_force(f)
    assert torch.allclose(additive_projection(f), reference, atol=1e-12)
    # fed as pair batches of 3 in a shuffled order, as a run would never feed them: the same result
    projection = AdditiveProjection(4)
    order = torch.randperm(16, generator=g)
    texts, images = order // 4, order % 4
    for start in range(0, 16, 3):
        t, v = texts[start:start + 3], images[start:start + 3]
        projection.add(t, v, f[t, v])
    assert torch.allclose(projection.projected(), reference, atol=1e-12)
    assert torch.equal(projection.diagonal(), f[torch.arange(4), torch.arange(4)])


def test_every_pair_once():
    chunks = pair_chunks(5, 7)
    pairs = [(int(t), int(v)) for texts, images in chunks for t, v in zip(texts, images)]
    assert sorted(pairs) == [(t, v) for t in range(5) for v in range(5)] and max(len(c[0]) for c in chunks) == 7
    projection = AdditiveProjection(2)
    projection.add(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.ones(2, 1))
    with pytest.raises(ValueError, match="2 of the 4 pairs"):
        projection.projected()
    with pytest.raises(ValueError, match="twice"):
        projection.add(torch.tensor([0]), torch.tensor([1]), torch.ones(1, 1))


def _accuracy(labels: torch.Tensor):
    return lambda outputs: {"accuracy": 100.0 * float((outputs.argmax(-1) == labels).double().mean())}


def test_an_additive_model_scores_the_same_under_emap():
    g = torch.Generator().manual_seed(0)
    n, classes = 12, 5
    text_part, image_part = torch.randn(n, classes, generator=g), torch.randn(n, classes, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    own, additive = emap_scores(n, lambda t, v: text_part[t] + image_part[v], _accuracy(labels), batch_size=7)
    assert own == additive and own["accuracy"] > 0


def test_an_xor_model_falls_to_chance_under_emap():
    # a text bit and an image bit, the answer is their XOR: every combination equally often
    text_bit = torch.tensor([0, 0, 1, 1] * 4)
    image_bit = torch.tensor([0, 1, 0, 1] * 4)
    labels = text_bit ^ image_bit
    n = len(labels)

    def xor_model(t, v):  # logits (B, 2): confident in the XOR of the pair's bits
        return 5.0 * nn.functional.one_hot(text_bit[t] ^ image_bit[v], 2).double()

    own, additive = emap_scores(n, xor_model, _accuracy(labels), batch_size=10)
    assert own["accuracy"] == 100.0 and additive["accuracy"] == 50.0  # chance: two balanced answers
    f = torch.stack([xor_model(torch.full((n,), i), torch.arange(n)) for i in range(n)])
    assert torch.allclose(additive_projection(f), torch.full((n, 2), 2.5, dtype=torch.float64))  # no information


def test_items_are_a_seeded_sample():
    assert emap_items(10, 50, 0) == list(range(10))
    picked = emap_items(1000, 20, 3)
    assert picked == sorted(set(picked)) and len(picked) == 20 and picked == emap_items(1000, 20, 3)
    assert picked != emap_items(1000, 20, 4)


class _TextPlusImage(nn.Module):
    """Hand-built additive VQA model: answer logits = a function of the question + a function of the image."""

    def __init__(self, vocab: int, answers: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.words = nn.Embedding(vocab, answers)
        self.pixels = nn.Linear(3, answers)

    def forward(self, batch):
        text = (self.words(batch["input_ids"]) * batch["attention_mask"].unsqueeze(-1)).sum(1)
        return text + 10 * self.pixels(batch["pixel_values"].mean((2, 3)))


def _vqa_task(cache_dir):
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    dataset = build_shapes(None, {"train_images": 30, "val_images": 8, "test_images": 8}, cache_dir, quiet=True)
    task = VQATask(load_task_spec("vqa"), dataset)
    tokenizer = word_level_tokenizer(build_word_vocab(task.training_texts()))
    task.prepare(tokenizer)
    return task, tokenizer


def test_the_vqa_task_pairs_texts_with_images_and_an_additive_model_keeps_its_score(cache_dir):
    task, tokenizer = _vqa_task(cache_dir)
    model = _TextPlusImage(len(tokenizer), len(task.answers)).eval()
    modalities = ("text", "image")
    block = emap_block(task, model, "test", 12, 1, "accuracy", 25, modalities, torch.device("cpu"))
    assert block["items"] == 12 and block["pairs"] == 144 and block["metric"] == "accuracy"
    assert block["gap"] == pytest.approx(0.0, abs=1e-9) and block["model"] == block["emap"]
    # the model's own score on those items is what the ordinary evaluation gives them
    items = emap_items(task.num_examples("test"), 12, 1)
    evaluated = task.evaluate(model, "test", 64, modalities, torch.device("cpu"))
    qids = list(task._rows["test"]["question_id"])
    assert block["model"] == pytest.approx(sum(evaluated.per_example[str(qids[i])] for i in items) * 100 / 12, abs=0.01)
    # a pair batch really shows question i with image j
    batch = task.pair_batch("test", [0, 0], [items[1], items[2]], modalities)
    alone = task.collate("test", [items[1], items[2]], modalities)
    assert torch.equal(batch["pixel_values"], alone["pixel_values"])
    assert torch.equal(batch["input_ids"][0], batch["input_ids"][1])


def test_a_model_that_writes_its_answers_is_skipped(cache_dir):
    from vlbench.tasks.generated import GeneratingModel

    task, _ = _vqa_task(cache_dir)
    model = GeneratingModel.__new__(GeneratingModel)
    nn.Module.__init__(model)
    block = emap_block(task, model, "test", 4, 0, "accuracy", 8, ("text", "image"), torch.device("cpu"))
    assert "no answer logits" in block["skipped"]


SMALL_VILT = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
              "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]


def test_run_records_emap_and_the_table_shows_the_gap(tmp_path, capsys):
    from vlbench.cli.main import main
    from vlbench.results.records import load_records
    from vlbench.results.table import aggregate, render

    results = tmp_path / "runs"
    args = ["run", "--task", "vqa", "--baseline", "vilt", "--baseline", "text-bert", "--results-dir", str(results),
            "--max-steps", "1", "--quiet", "--seeds", "0,1", "--emap-items", "5", *TINY_DATA, *SMALL_VILT]
    assert main(args) == 0
    record = json.loads((results / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())
    block = record["emap"]
    assert block["items"] == 5 and block["pairs"] == 25 and block["metric"] == "accuracy"
    assert block["gap"] == pytest.approx(block["model"] - block["emap"])
    assert json.loads((results / "vqa" / "shapes" / "text-bert" / "seed-0.json").read_text())["emap"] is None
    assert main(["validate", str(results)]) == 0
    rows = {r["baseline"]: r for r in aggregate(load_records(results)).rows if r["primary"]}
    gaps = [json.loads((results / "vqa" / "shapes" / "vilt" / f"seed-{s}.json").read_text())["emap"]["gap"]
            for s in (0, 1)]
    assert rows["vilt"]["emap_gap"] == pytest.approx(sum(gaps) / 2) and rows["vilt"]["emap_seeds"] == 2
    assert rows["text-bert"]["emap_gap"] is None
    for fmt in ("md", "csv", "latex", "json", "html"):
        text = render(aggregate(load_records(results)), fmt)
        assert ("EMAP (accuracy, 5 items" in text) if fmt not in ("csv", "json") else ("emap_gap" in text), fmt
    # the cell gives the model's score on the items, EMAP's, and the gap with its interval over the two seeds
    row = rows["vilt"]
    cell = (f"{row['emap_model']:.2f} − {row['emap']:.2f} = {row['emap_gap']:+.2f} "
            f"[{row['emap_gap_ci_low']:+.2f}, {row['emap_gap_ci_high']:+.2f}]")
    markdown = render(aggregate(load_records(results)), "md").replace("\\[", "[").replace("\\]", "]")
    assert cell in markdown
    # the same config asked for EMAP on more items: the finished record lacks it, so the run is done again
    more = [a if a != "5" else "6" for a in args]
    assert main(more) == 0
    assert json.loads((results / "vqa" / "shapes" / "vilt" / "seed-0.json").read_text())["emap"]["items"] == 6


def test_emap_is_refused_for_a_task_type_without_output_scores(tmp_path, capsys):
    from vlbench.cli.main import main

    code = main(["run", "--task", "captioning", "--baseline", "captioner-vilt", "--results-dir", str(tmp_path),
                 "--max-steps", "1", "--quiet", "--emap", *TINY_DATA])
    err = capsys.readouterr().err
    assert code == 2 and "training.emap_items" in err and "vqa" in err and len(err.strip().splitlines()) == 1
