"""Data parallelism on CPU with the gloo backend: gathered evaluation blocks and cross-process InfoNCE negatives."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from vlbench import distributed
from vlbench.tasks.retrieval import contrastive_loss

WORLD = 2
TINY = ["task.data.train_images=48", "task.data.val_images=12", "task.data.test_images=13",
        "baseline.config.hidden_size=32", "baseline.config.num_layers=1", "baseline.config.num_heads=2",
        "baseline.config.intermediate_size=64"]


def _vqa(cache_dir: str):
    """The tiny VQA task and a freshly initialised ViLT, exactly as the runner builds them (seed 0)."""
    from vlbench import builtins  # noqa: F401
    from vlbench.peft.assemble import assemble
    from vlbench.registry import TASK_TYPES
    from vlbench.runner import _TokenizerCache, load_dataset
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    config = resolve_run_config(load_task_spec("vqa"), load_baseline_spec("vilt"), overrides=TINY)
    task = TASK_TYPES.get("vqa")(config.task, load_dataset(config.dataset, config.task.data, cache_dir, quiet=True))
    tokenizer = _TokenizerCache(task, [config]).get()
    built = assemble(config, 0, task, tokenizer, pretrained=None)
    return task, built.model, built.modalities


def _evaluate(task, model, modalities):
    # batches of one: each example's forward is then the same computation whichever process runs it
    return task.evaluate(model, "test", 1, modalities, torch.device("cpu"))


def _pairs():
    """A global batch of 8 (text, image) feature pairs; images 0 and 5 are the same picture (two captions)."""
    g = torch.Generator().manual_seed(7)
    text, image = torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)
    keys = torch.tensor([0, 1, 2, 3, 4, 0, 6, 7])
    return text, image, keys


class Towers(torch.nn.Module):
    """A tiny two-tower model: text and image projections and a learnable temperature."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.text, self.image = torch.nn.Linear(6, 4), torch.nn.Linear(5, 4)
        self.scale = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, text, image):
        """Normalised embeddings and the logit scale."""
        n = torch.nn.functional.normalize
        return n(self.text(text), dim=-1), n(self.image(image), dim=-1), self.scale.exp()


def _worker(rank: int, init: str, out: str, cache_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        # evaluation: contiguous blocks, gathered in rank order, give every example exactly once, in order
        blocks = {n: distributed.gather_list(list(distributed.shard_range(n))) for n in (0, 1, 7, 8, 13)}
        tensor_rows = distributed.gather_tensor_rows(torch.arange(rank * 10, rank * 10 + rank + 1))
        # training: each process holds half of the global batch; DDP averages the gradients
        model = DDP(Towers())
        text, image, keys = _pairs()
        part = slice(rank * 4, rank * 4 + 4)
        t, i, scale = model(text[part], image[part])
        g = distributed.gather_with_grad
        loss = contrastive_loss(g(t), g(i), scale, g(keys[part]))
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.module.named_parameters()}
        broadcast = distributed.broadcast("from-main" if rank == 0 else "ignored")
        # evaluation of the same weights: each process predicts its block, the main one scores all of them
        task, vqa_model, modalities = _vqa(cache_dir)
        result = _evaluate(task, DDP(vqa_model), modalities)
        if rank == 0:
            torch.save({"blocks": blocks, "rows": tensor_rows, "loss": loss.detach(), "grads": grads,
                        "main": distributed.is_main(), "world": distributed.world_size(), "broadcast": broadcast,
                        "vqa": (result.metrics, result.predictions, result.per_example)}, out)
    finally:
        dist.destroy_process_group()


def test_gloo_evaluation_and_infonce_negatives_match_one_process(tmp_path, cache_dir):
    task, model, modalities = _vqa(str(cache_dir))  # builds the tiny dataset once, before the processes start
    single = _evaluate(task, model, modalities)
    out = tmp_path / "rank0.pt"
    # fork: the workers start with everything already imported (spawn would import torch and transformers again)
    mp.start_processes(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(out), str(cache_dir)), nprocs=WORLD,
                       join=True, start_method="fork")
    got = torch.load(out, weights_only=False)
    metrics, predictions, per_example = got["vqa"]
    # same test set (odd-sized, so the blocks are unequal), same predictions in the same order, same scores
    assert len(predictions) == len(single.predictions) == task.num_examples("test")
    assert predictions == single.predictions and metrics == single.metrics and per_example == single.per_example

    assert got["main"] and got["world"] == WORLD and got["broadcast"] == "from-main"
    for n, gathered in got["blocks"].items():
        assert gathered == list(range(n))  # no example dropped, none twice, original order
    assert got["rows"].tolist() == [0, 10, 11]  # unequal row counts per process are fine

    # reference: one process, the whole global batch, no gathering
    model = Towers()
    text, image, keys = _pairs()
    loss = contrastive_loss(*model(text, image), keys)
    loss.backward()
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-6)
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    assert set(got["grads"]) == set(expected)
    for name, grad in expected.items():
        assert torch.allclose(got["grads"][name], grad, atol=1e-6), name
    # with only local negatives (half the batch) the gradient differs: the comparison above can fail
    model.zero_grad()
    contrastive_loss(*model(text[:4], image[:4]), keys[:4]).backward()
    assert not torch.allclose(model.text.weight.grad, expected["text.weight"], atol=1e-4)


def test_single_process_is_a_no_op():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert list(distributed.shard_range(5)) == [0, 1, 2, 3, 4]
    x = torch.randn(3, requires_grad=True)
    assert distributed.gather_with_grad(x) is x and distributed.gather_list([1, 2]) == [1, 2]
    assert distributed.on_main(lambda: 42) == 42
