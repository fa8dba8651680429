"""Data parallelism on CPU with gloo: the training loop's step, gathered evaluation blocks, InfoNCE negatives."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from tests.training_fixtures import RegressionTask, Regressor, config
from vlbench import distributed
from vlbench.tasks.retrieval import contrastive_loss

WORLD = 2
DATA = ["task.data.train_images=48", "task.data.val_images=12", "task.data.test_images=13"]
CASES = {  # task: (baseline, overrides, evaluation batch size)
    # batches of one: each question's forward is the same computation whichever process runs it
    "vqa": ("vilt", ["baseline.config.hidden_size=32", "baseline.config.num_layers=1", "baseline.config.num_heads=2",
                     "baseline.config.intermediate_size=64"], 1),
    # image and caption batches are cut the same way whatever the number of processes, then dealt out
    "retrieval": ("retrieval-two-stage", ["baseline.config.hidden_size=16", "baseline.config.text_layers=1",
                                          "baseline.config.image_layers=1", "baseline.config.num_heads=2",
                                          "baseline.config.intermediate_size=32", "task.options.embed_dim=8",
                                          "baseline.config.top_k=2", "task.options.pair_batch_size=16"], 4),
}


def _task_and_model(cache_dir: str, task_name: str):
    """A tiny task and a freshly initialised model, exactly as the runner builds them (seed 0)."""
    from vlbench.peft.assemble import assemble
    from vlbench.registry import TASK_TYPES
    from vlbench.runner import TokenizerCache, load_dataset
    from vlbench.specs import load_baseline_spec, load_task_spec, resolve_run_config

    baseline, overrides, _ = CASES[task_name]
    config = resolve_run_config(load_task_spec(task_name), load_baseline_spec(baseline), overrides=DATA + overrides)
    task = TASK_TYPES.get(config.task.type)(config.task,
                                            load_dataset(config.dataset, config.task.data, cache_dir, quiet=True))
    tokenizer = TokenizerCache(task).get(config.baseline.tokenizer)
    built = assemble(config, 0, task, tokenizer, pretrained=None)
    return task, built.model, built.modalities


def _evaluate(task_name: str, task, model, modalities):
    return task.evaluate(model, "test", CASES[task_name][2], modalities, torch.device("cpu"))


def _comparable(result):
    predictions = result.predictions
    if isinstance(predictions, dict):  # retrieval: the similarity matrix and its index lists
        predictions = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in predictions.items()}
    return result.metrics, predictions, result.per_example


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
        evaluated = {}
        for name in CASES:
            task, task_model, modalities = _task_and_model(cache_dir, name)
            evaluated[name] = _comparable(_evaluate(name, task, DDP(task_model), modalities))
        if rank == 0:
            torch.save({"blocks": blocks, "loss": loss.detach(), "grads": grads,
                        "main": distributed.is_main(), "world": distributed.world_size(), "broadcast": broadcast,
                        "evaluated": evaluated}, out)
    finally:
        dist.destroy_process_group()


def test_gloo_evaluation_and_infonce_negatives_match_one_process(tmp_path, cache_dir):
    single, sizes = {}, {}
    for name in CASES:  # builds the tiny datasets once, before the processes start
        task, model, modalities = _task_and_model(str(cache_dir), name)
        single[name] = _comparable(_evaluate(name, task, model, modalities))
        sizes[name] = task.num_examples("test")
    out = tmp_path / "rank0.pt"
    # fork: the workers start with everything already imported (spawn would import torch and transformers again)
    mp.start_processes(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(out), str(cache_dir)), nprocs=WORLD,
                       join=True, start_method="fork")
    got = torch.load(out, weights_only=False)
    similarity = got["evaluated"]["retrieval"][1]["similarity"]  # test images x captions, every row and column once
    # a block of other rows runs its matmuls in another blocking, so scores agree to float rounding, not bits
    assert torch.allclose(torch.tensor(similarity), torch.tensor(single["retrieval"][1]["similarity"]), rtol=1e-5,
                          atol=1e-5)
    for name in CASES:
        # same test set (odd-sized, so the blocks are unequal), same predictions in the same order, same scores
        got_case, single_case = got["evaluated"][name], single[name]
        if name == "retrieval":
            got_case = (got_case[0], {k: v for k, v in got_case[1].items() if k != "similarity"}, *got_case[2:])
            single_case = (single_case[0], {k: v for k, v in single_case[1].items() if k != "similarity"},
                           *single_case[2:])
        assert got_case == single_case, name
    metrics, predictions, per_example = got["evaluated"]["vqa"]
    assert len(predictions) == len(per_example) == sizes["vqa"]
    assert (len(similarity), len(similarity[0])) == (13, sizes["retrieval"])

    assert got["main"] and got["world"] == WORLD and got["broadcast"] == "from-main"
    for n, gathered in got["blocks"].items():
        assert gathered == list(range(n))  # no example dropped, none twice, original order

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


class _Recorded(RegressionTask):
    """The regression task, noting which examples each training forward pass saw."""

    def __init__(self) -> None:
        super().__init__(n_train=8)
        self.seen: list[list[int]] = []

    def loss(self, outputs, batch):
        if outputs.requires_grad:
            self.seen.append(batch["index"].tolist())
        return super().loss(outputs, batch)


def _one_step_worker(rank: int, port: int, out: str) -> None:
    """One optimizer step of vlbench's own training loop on one of two processes: its gradients and examples."""
    import os

    from accelerate.state import AcceleratorState

    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    AcceleratorState._reset_state(reset_partial_state=True)  # forked from pytest: start from no accelerate state
    get_accelerator.cache_clear()
    accelerator = get_accelerator("auto")  # what `torchrun ... vlbench run` gets on a machine without a GPU
    model, task, grads = Regressor(0), _Recorded(), {}
    names = {id(p): name for name, p in model.named_parameters()}

    def before_step(optimizer, args, kwargs):  # the gradients the optimizer is about to apply
        for group in optimizer.param_groups:
            grads.update({names[id(p)]: p.grad.clone() for p in group["params"] if p.grad is not None})

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        cfg = config(epochs=1, batch_size=4, grad_clip=None)  # the reference below does not clip either
        result = fit(model, task, cfg, accelerator=accelerator, seed=0, modalities=())
    finally:
        handle.remove()
        torch.distributed.destroy_process_group()
    torch.save({"grads": grads, "seen": task.seen, "steps": result.steps,
                "processes": accelerator.num_processes}, f"{out}-{rank}.pt")


def test_the_training_loop_on_two_processes_takes_the_gradient_of_one_process_on_the_global_batch(tmp_path):
    from tests.process_helpers import free_port

    out = str(tmp_path / "rank")
    mp.start_processes(_one_step_worker, args=(free_port(), out), nprocs=WORLD, join=True, start_method="fork")
    got = [torch.load(f"{out}-{rank}.pt", weights_only=False) for rank in range(WORLD)]
    assert [g["processes"] for g in got] == [WORLD, WORLD] and [g["steps"] for g in got] == [1, 1]
    shards = [g["seen"] for g in got]
    assert all(len(s) == 1 and len(s[0]) == 4 for s in shards)  # one micro-batch of 4 on each process
    global_batch = shards[0][0] + shards[1][0]
    assert sorted(global_batch) == list(range(8))  # together: the global batch of 8, each example once
    # reference: one process, the whole global batch, the same initial weights
    task, model = RegressionTask(n_train=8), Regressor(0)
    batch = task.collate("train", global_batch, ())
    task.loss(model(batch), batch).backward()
    expected = {name: p.grad for name, p in model.named_parameters()}
    for g in got:  # every process applies the same, averaged gradient
        assert set(g["grads"]) == set(expected)
        for name, grad in expected.items():
            assert torch.allclose(g["grads"][name], grad, atol=1e-6), name
    # one process's own half gives another gradient: the comparison above can fail
    half = task.collate("train", shards[0][0], ())
    model.zero_grad()
    task.loss(model(half), half).backward()
    assert not torch.allclose(model.net[0].weight.grad, expected["net.0.weight"], atol=1e-4)
