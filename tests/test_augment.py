"""training.augment: the flip rewrites sides in questions and answers, draws are seeded, evaluation never sees it."""

from __future__ import annotations

import pytest
import torch

from tests.zoo_fixtures import SMALL, distinct_rows, one_thread, tiny  # noqa: F401
from vlbench.specs.robustness import AugmentConfig
from vlbench.training.augment import BatchAugmenter, swap_words, vocabulary_rewrite
from vlbench.training.augment.rewrite import ENGLISH_SIDES
from vlbench.training.augment.text import drop_tokens, shuffle_words, word_pieces

VILT_SMALL = {**SMALL, "num_layers": 1}


def _side_rows(task, limit: int = 8) -> list[int]:
    questions = list(task._rows["train"]["question"])
    return [i for i, q in enumerate(questions) if " left " in q or " right " in q][:limit]


def _texts(tokenizer, ids: torch.Tensor) -> list[str]:
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids.tolist()]


def test_swap_words_mirrors_sides_keeps_case_and_everything_else():
    assert swap_words("Is the Left circle to the right of the leftmost box?", ENGLISH_SIDES) == \
        "Is the Right circle to the left of the rightmost box?"
    assert swap_words("LEFT bright leftover", ENGLISH_SIDES) == "RIGHT bright leftover"


def test_flip_rewrites_left_and_right_in_question_and_answer_and_mirrors_the_image(tiny):
    task, tokenizer = tiny.task()
    rows = _side_rows(task)
    assert rows, "the tiny shapes questions ask about left and right"
    batch = task.collate("train", rows, ("text", "image"))
    # answer classes that name sides: a flipped "left" answer must score as "right"
    task_answers = task.answers
    task.answers = ["left", "right", "yes", "no"]
    try:
        inputs = task.augment_inputs()
    finally:
        task.answers = task_answers
    targets = torch.zeros(len(rows), 4)
    targets[:, 0] = 1.0  # every example answers "left"
    targets[0, 2] = 0.3
    batch["targets"] = targets
    out = BatchAugmenter(AugmentConfig(flip=1.0), inputs, seed=0)(batch, epoch=1, number=1)
    before, after = _texts(tokenizer, batch["input_ids"]), _texts(tokenizer, out["input_ids"])
    for question, flipped in zip(before, after):
        assert flipped == swap_words(question, ENGLISH_SIDES) and flipped != question
    assert torch.equal(out["targets"][:, 1], targets[:, 0]) and not out["targets"][:, 0].any()
    assert torch.equal(out["targets"][:, 2], targets[:, 2])
    assert torch.equal(out["pixel_values"], batch["pixel_values"].flip(-1))


def test_an_answer_without_its_mirror_leaves_the_example_unflipped():
    rewrite = vocabulary_rewrite("targets", ["left", "right", "leftmost", "yes"], ENGLISH_SIDES, kind="columns")
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    batch = {"index": torch.arange(3), "targets": targets, "pixel_values": torch.rand(3, 3, 4, 4)}
    from vlbench.training.augment import AugmentInputs

    out = BatchAugmenter(AugmentConfig(flip=1.0), AugmentInputs(rewrites=[rewrite]), seed=0)(batch, 1, 1)
    assert out["targets"][0].tolist() == [0, 1.0, 0, 0]  # left -> right
    assert torch.equal(out["targets"][1], targets[1])  # "leftmost" has no "rightmost" class: not flipped
    assert torch.equal(out["pixel_values"][1], batch["pixel_values"][1])
    assert torch.equal(out["pixel_values"][2], batch["pixel_values"][2].flip(-1))


def test_flip_rewrites_every_target_row_of_a_flipped_example():
    from vlbench.tasks.generation.seq2seq import encode_targets, teacher_forcing_batch
    from vlbench.tasks.generation.vocabulary import TargetVocab

    targets = [["a circle to the left of a square", "a circle left of a box"], ["a box to the right of a ball"]]
    vocab = TargetVocab.build([t for ts in targets for t in ts], lowercase=True)
    ids, offsets = encode_targets(vocab, targets, 16)
    batch = {"index": torch.arange(2), **teacher_forcing_batch(ids, offsets, torch.arange(2), None, 1)}
    rewrites = [vocabulary_rewrite(k, vocab.itos, ENGLISH_SIDES, owner="target_owner")
                for k in ("decoder_input_ids", "labels")]
    from vlbench.training.augment import AugmentInputs

    out = BatchAugmenter(AugmentConfig(flip=1.0), AugmentInputs(rewrites=rewrites), seed=0)(batch, 1, 1)
    decoded = [vocab.decode(row) for row in out["decoder_input_ids"].tolist()]
    assert decoded == ["a circle to the right of a square", "a circle right of a box", "a box to the left of a ball"]
    assert torch.equal(out["labels"] == -100, batch["labels"] == -100)


def test_captions_whose_vocabulary_lacks_the_mirror_word_stay_unflipped(cache_dir, one_thread):
    from tests.zoo_fixtures import TINY
    from vlbench.models.pretrained import load_tokenizer
    from vlbench.registry import TASK_TYPES
    from vlbench.runner import load_dataset
    from vlbench.specs import load_task_spec

    spec = load_task_spec("captioning").model_copy(update={"data": dict(TINY)})
    task = TASK_TYPES.get("captioning")(spec, load_dataset("shapes", spec.data, cache_dir, quiet=True))
    task.prepare(load_tokenizer(None, task.training_texts()))
    task.loader("train", 4, ())  # the first training pass
    assert "left" in task.vocab.stoi and "right" not in task.vocab.stoi  # shapes captions say "to the left of" only
    batch = task.collate("train", list(range(32)), ("image",))
    out = BatchAugmenter(AugmentConfig(flip=1.0), task.augment_inputs(), seed=0)(batch, 1, 1)
    # the rows trained on in this pass (a few captions per image) decide: one that says "left" blocks the flip
    says_left = torch.zeros(32, dtype=torch.bool)
    for row, owner in zip(batch["decoder_input_ids"].tolist(), batch["target_owner"].tolist()):
        says_left[owner] |= " left " in f" {task.vocab.decode(row)} "
    assert says_left.any() and not says_left.all()
    assert torch.equal(out["decoder_input_ids"], batch["decoder_input_ids"])
    for i in range(32):
        expected = batch["pixel_values"][i] if says_left[i] else batch["pixel_values"][i].flip(-1)
        assert torch.equal(out["pixel_values"][i], expected)


def test_draws_are_a_function_of_seed_epoch_and_batch(tiny):
    task, _ = tiny.task()
    batch = task.collate("train", distinct_rows(task, 8), ("text", "image"))
    config = AugmentConfig(flip=0.5, crop={}, rotation=10, color_jitter={"brightness": 0.3, "contrast": 0.3},
                           token_dropout=0.2, token_mask=0.2, word_shuffle=2)
    inputs = task.augment_inputs()
    first = BatchAugmenter(config, inputs, seed=3)(batch, 2, 5)
    again = BatchAugmenter(config, inputs, seed=3)(batch, 2, 5)
    other = BatchAugmenter(config, inputs, seed=3)(batch, 2, 6)
    for key in ("pixel_values", "input_ids", "attention_mask"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["pixel_values"], other["pixel_values"])
    assert not torch.equal(first["pixel_values"], batch["pixel_values"])
    assert first["pixel_values"].shape == batch["pixel_values"].shape and torch.isfinite(first["pixel_values"]).all()
    low, high = (0 - 0.5) / 0.5, (1 - 0.5) / 0.5  # the default transform's range
    assert first["pixel_values"].min() >= low - 1e-5 and first["pixel_values"].max() <= high + 1e-5


def test_word_noise_moves_pieces_at_most_k_places_and_dropout_closes_gaps():
    special = torch.tensor([0, 1, 2])  # pad, cls, sep
    ids = torch.tensor([[1, 10, 11, 12, 13, 14, 15, 2, 0, 0]])
    mask = (ids != 0).long()
    words = word_pieces(ids, mask, special)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = shuffle_words(ids, words, 2, generator)
        assert out[0, 0] == 1 and out[0, 7] == 2 and (out[0, 8:] == 0).all()
        assert sorted(out[0, 1:7].tolist()) == list(range(10, 16))
        assert all(abs(out[0].tolist().index(v) - ids[0].tolist().index(v)) <= 2 for v in range(10, 16))
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    dropped = drop_tokens(batch, words, 0.5, 0, torch.Generator().manual_seed(1))
    kept = int(dropped["attention_mask"].sum())
    assert 2 <= kept < 8
    row = dropped["input_ids"][0].tolist()
    assert row[0] == 1 and row[kept - 1] == 2 and all(v == 0 for v in row[kept:])
    assert row[1:kept - 1] == [v for v in range(10, 16) if v in row[1:kept - 1]]  # order kept


def test_augmentation_reaches_training_batches_only(tiny):
    from vlbench.specs import TrainingConfig
    from vlbench.training.device import get_accelerator
    from vlbench.training.trainer import fit

    assembled, task = tiny.build(tiny.config("vilt", config=VILT_SMALL))
    model = assembled.model
    seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []
    model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, args[0]["pixel_values"].clone(), args[0]["input_ids"].clone())))
    cfg = TrainingConfig(max_steps=2, epochs=1, batch_size=8, eval_batch_size=64, lr=1e-3, patience=0,
                         augment=AugmentConfig(flip=1.0, rotation=20, token_mask=0.5))
    fit(model, task, cfg, accelerator=get_accelerator("cpu"), seed=0, modalities=assembled.modalities)
    clean = task.collate("validation", list(range(task.num_examples("validation"))), assembled.modalities)
    clean_rows = {bytes(r.numpy().tobytes()) for r in clean["pixel_values"]}
    evaluated = [s for s in seen if not s[0]]
    trained = [s for s in seen if s[0]]
    assert evaluated and trained
    for _, pixels, ids in evaluated:
        assert all(bytes(r.numpy().tobytes()) in clean_rows for r in pixels)
        assert not (ids == task.tokenizer.mask_token_id).any()
    assert any((ids == task.tokenizer.mask_token_id).any() for _, _, ids in trained)
