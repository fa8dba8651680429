"""The GPT-style baselines over SmolLM2 (issue 21): text-smollm, llava-smollm(-scratch) and prompted-smollm.

One short run of each writes an ok record; LoRA leaves every frozen weight of the language model (and the
frozen image part) bit-identical while the adapters and the projector train; generation does not depend
on batching; generated answers are scored after the task's normalisation. The GGUF comes through
`vlbench pretrained install smollm2`'s code path and is dequantised once for the whole module (the loader
keeps it per process), so every run and model below reuses it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.smollm_fixtures import gguf_reader, smollm2_gguf  # noqa: F401
from vlbench.cli.main import main

DATA = {"train_images": 8, "val_images": 2, "test_images": 2}
TINY = [arg for key, value in DATA.items() for arg in ("--set", f"task.data.{key}={value}")]
LORA = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.fixture(scope="module")
def gguf(smollm2_gguf, gguf_reader):  # noqa: F811
    """The verified GGUF, loaded once so that every later load in this process is a copy."""
    from vlbench.models.smollm import load_gguf_model

    load_gguf_model(smollm2_gguf)
    return smollm2_gguf


@pytest.fixture(scope="module")
def task(gguf, cache_dir):
    """The VQA task over the same tiny shapes world as the runs."""
    from vlbench.data.shapes import build_shapes
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    return VQATask(load_task_spec("vqa"), build_shapes(None, DATA, cache_dir, quiet=True))


def _run(results, baseline: str, *extra: str, task: str = "vqa") -> dict:
    code = main(["run", "--task", task, "--baseline", baseline, *TINY, "--results-dir", str(results), "--quiet", *extra])
    assert code == 0
    record = json.loads(next(results.glob(f"{task}/shapes/{baseline}/seed-0.json")).read_text())
    assert record["status"] == "ok"
    return record


def _predictions(results, baseline: str) -> list[dict]:
    return json.loads(next(results.glob(f"vqa/shapes/{baseline}/seed-0.predictions.json")).read_text())


def test_text_smollm_trains_lora_and_generates_normalised_answers(gguf, task, tmp_path):
    record = _run(tmp_path, "text-smollm", "--max-steps", "2")
    # LoRA r=8 on q, k, v, o of 30 layers (576 wide; k and v 192 wide): 30 * 8 * (2*1152 + 2*768)
    assert record["parameters"]["trainable"] == 30 * 8 * (2 * (576 + 576) + 2 * (576 + 192))
    assert 130e6 < record["parameters"]["total"] < 140e6
    assert record["peft"]["method"] == "lora" and record["peft"]["adapted_layers"] == 120
    assert record["training"]["steps"] == 2 and record["modalities"] == ["text"]
    answers = [p["answer"] for p in _predictions(tmp_path, "text-smollm")]
    assert len(answers) == record["data"]["sizes"]["test"]
    assert all(task.answer_from_text(a) == a for a in answers)  # already in the scored form


def test_llava_smollm_trains_projector_and_reads_images(gguf, tmp_path):
    record = _run(tmp_path, "llava-smollm", "--max-steps", "2")
    projector = 1280 * 576 + 576 + 576 * 576 + 576
    assert record["parameters"]["trainable"] == 30 * 8 * (2 * (576 + 576) + 2 * (576 + 192)) + projector
    assert record["modalities"] == ["text", "image"] and record["image_transform"].startswith("pretrained-224-bicubic")
    assert set(record["ablation"]) >= {"blank", "shuffled"}


def test_llava_smollm_writes_captions(gguf, tmp_path):
    record = _run(tmp_path, "llava-smollm", "--max-steps", "2", "--set", "task.options.max_target_length=6",
                  task="captioning")
    assert record["test"]["details"]["decoding"] == {"beam_size": 1, "max_length": 6,
                                                     "by": "the model's own greedy generation"}
    assert "CIDEr" in record["test"]["metrics"]
    captions = json.loads(next(tmp_path.glob("captioning/shapes/llava-smollm/seed-0.predictions.json")).read_text())
    assert len(captions) == record["data"]["sizes"]["test"] and all("\n" not in c["caption"] for c in captions)


def test_llava_smollm_translates_after_a_prompt_that_names_the_source(gguf, cache_dir, tmp_path):
    from vlbench.data.shapes import build_shapes
    from vlbench.models.smollm import load_gguf_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vmt import VMTTask

    vmt = VMTTask(load_task_spec("vmt"), build_shapes(None, DATA, cache_dir, quiet=True))
    sources = vmt._sources("test")
    assert vmt.generator_prompts("test", [0, 1]) == [f"English: {s} German:" for s in sources[:2]]
    record = _run(tmp_path, "llava-smollm", "--max-steps", "2", task="vmt")
    assert record["modalities"] == ["text", "image"] and {"BLEU", "chrF"} <= set(record["test"]["metrics"])
    # the budget is the longest training reference in SmolLM2's own tokens (German words take several)
    tokenizer = load_gguf_tokenizer(gguf)
    budget = max(len(tokenizer(" " + t, add_special_tokens=False)["input_ids"]) for t in vmt.references("train")) + 1
    assert record["test"]["details"]["decoding"] == {"beam_size": 1, "max_length": budget,
                                                     "by": "the model's own greedy generation"}
    assert budget > vmt.options.max_target_length // 2
    lines = next(tmp_path.glob("vmt/shapes/llava-smollm/seed-0.predictions.txt")).read_text().splitlines()
    references = next(tmp_path.glob("vmt/shapes/llava-smollm/seed-0.predictions.ref.txt")).read_text().splitlines()
    assert len(lines) == len(references) == record["data"]["sizes"]["test"]
    text = _run(tmp_path, "text-smollm", "--max-steps", "2", task="vmt")
    assert text["modalities"] == ["text"] and text["config_hash"] != record["config_hash"]


def test_llava_smollm_scratch_twin_runs_with_random_parts(gguf, tmp_path):
    from safetensors.torch import load_file

    record = _run(tmp_path, "llava-smollm-scratch", "--max-steps", "2")
    assert record["parameters"]["trainable"] == 30 * 8 * (2 * (576 + 576) + 2 * (576 + 192)) + 1280 * 576 + 576 + 576 * 576 + 576
    trained = load_file(str(next(tmp_path.glob("vqa/shapes/llava-smollm-scratch/seed-0.weights.safetensors"))))
    assert any("lora_A" in name for name in trained) and any("projector" in name for name in trained)
    part = record["features"]["parts"][0]["part"]
    assert part["weights"].startswith("random-init:")  # the image part's weights were drawn, not loaded


def test_scratch_twin_has_smollm2s_shapes_and_none_of_its_weights(gguf):
    from vlbench.models.base import BuildContext
    from vlbench.models.smollm import load_gguf_model
    from vlbench.models.smollm_generator import SmolLlavaConfig, SmolLMLlava

    torch.manual_seed(0)
    twin = SmolLMLlava.from_spec(SmolLlavaConfig(scratch=True), str(gguf), BuildContext(task_type="vqa")).vlm.lm
    real = dict(load_gguf_model(gguf).named_parameters())
    mine = dict(twin.named_parameters())
    assert {n: p.shape for n, p in mine.items()} == {n: p.shape for n, p in real.items()}
    assert not any(torch.equal(p, real[n]) for n, p in mine.items() if p.dim() > 1)  # every matrix drawn anew


def test_prompted_smollm_trains_a_visual_prefix_then_prompts(gguf, cache_dir, tmp_path):
    record = _run(tmp_path, "prompted-smollm", "--set", "baseline.config.shots=1",
                  "--set", "baseline.config.visual_prefix.images=2", "--set", "baseline.config.visual_prefix.batch_size=4")
    assert record["training"]["steps"] == 0  # no task training
    prefix = record["training"]["visual_prefix"]
    assert prefix["captions"] == 10 and prefix["images"] == 2 and prefix["seed"] == 0 and len(prefix["losses"]) == 1
    assert record["parameters"]["trainable"] == 1280 * 576 + 576 + 576 * 576 + 576  # the projector, on captions
    assert (cache_dir / "prefix" / f"smollm2-projector-{prefix['key']}.safetensors").is_file()


def _tiny_images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_lora_leaves_frozen_weights_bit_identical_and_the_projector_learns(gguf):
    from vlbench.models.base import BuildContext
    from vlbench.models.smollm_generator import SmolLlavaConfig, SmolLMLlava
    from vlbench.peft.apply import apply_peft
    from vlbench.peft.config import LoraSpec
    from vlbench.tasks.generated import GeneratingModel

    torch.manual_seed(0)
    generator = SmolLMLlava.from_spec(SmolLlavaConfig(visual_tokens=4), str(gguf), BuildContext(task_type="vqa"))
    texts = {0: ("Question: what shape is red? Answer:", "circle"), 1: ("Question: is there a cube? Answer:", "no")}
    model = GeneratingModel(generator, lambda idx: ([texts[i][0] for i in idx], [texts[i][1] for i in idx]))
    apply_peft(model, LoraSpec(method="lora", target_modules=LORA, trainable=["projector"]))
    vlm = generator.vlm
    frozen = {n: p.detach().clone() for n, p in vlm.named_parameters() if "lora_" not in n and "projector" not in n}
    projector = {n: p.detach().clone() for n, p in vlm.projector.named_parameters()}
    assert all(not p.requires_grad for n, p in vlm.named_parameters() if n in frozen)
    batch = {"index": torch.tensor([0, 1]), **generator.image_transform()(_tiny_images(2))}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        model(batch).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vlm.projector.parameters())
        optimizer.step()
    after = dict(vlm.named_parameters())
    assert all(torch.equal(value, after[name]) for name, value in frozen.items())  # LM and image part
    assert all(after[name].grad is None for name in frozen)
    assert all(not torch.equal(value, vlm.projector.get_parameter(name)) for name, value in projector.items())
    lora_b = [p for n, p in vlm.lm.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 120 and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero, so it moved


def test_generation_does_not_depend_on_batching(gguf):
    from vlbench.models.base import BuildContext
    from vlbench.models.smollm_generator import SmolLMConfig, SmolLMText

    generator = SmolLMText.from_spec(SmolLMConfig(), str(gguf), BuildContext(task_type="vqa")).eval()
    prompts = ["Question: What is the capital of France? Answer:", "Question: How many legs does a cat have? Answer:",
               "Question: Is the sky blue? Answer:"]
    together = generator.generate_text({}, prompts, 6)
    alone = [generator.generate_text({}, [p], 6)[0] for p in prompts]
    assert together == alone and any(together)
    assert generator.target_length(["no", "yes"]) == 2  # one token and the end mark


def test_generated_answers_take_the_task_normalisation(task):
    assert {"yes", "no"} <= set(task.answers)
    assert task.answer_from_text(" Yes.\nQuestion: is it red?") == "yes"  # first line, punctuation, case
    assert task.answer_from_text("NO!") == "no"
    assert task.answer_from_text("The Two") == "2"  # no class: scored in its normalised form
    assert task.answer_from_text("A purple elephant") == "purple elephant"


def test_all_baselines_on_the_embedded_data_leaves_them_out():
    from vlbench.plan import select_baselines
    from vlbench.specs import load_task_spec

    said: list[str] = []
    chosen = {s.name for s in select_baselines(load_task_spec("vqa"), [], True, "shapes", echo=said.append)}
    generative = {"text-smollm", "llava-smollm", "llava-smollm-scratch", "prompted-smollm"}
    assert not chosen & generative and all(name in said[0] for name in generative)
    on_vqav2 = {s.name for s in select_baselines(load_task_spec("vqa"), [], True, "vqav2")}
    assert {"text-smollm", "llava-smollm", "llava-smollm-scratch"} <= on_vqav2
