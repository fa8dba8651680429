"""Evaluation progress bars: a pass-through outside a run, one bar per evaluation loop inside one."""

from __future__ import annotations

import numpy as np

from vlbench.progress import evaluation_progress, track


class RecordingProgress:
    """Stands in for rich's Progress and remembers what happened to each bar."""

    def __init__(self) -> None:
        self.bars: dict[int, dict] = {}

    def add_task(self, description: str, total: int) -> int:
        self.bars[len(self.bars)] = {"description": description, "total": total, "advanced": 0, "removed": False}
        return len(self.bars) - 1

    def advance(self, bar: int) -> None:
        self.bars[bar]["advanced"] += 1

    def remove_task(self, bar: int) -> None:
        self.bars[bar]["removed"] = True


def test_track_is_a_pass_through_outside_a_run():
    assert list(track(iter([1, 2, 3]), 3, "scoring test")) == [1, 2, 3]
    with evaluation_progress(None, "ignored"):
        assert list(track(range(2), 2, "x")) == [0, 1]


def test_each_evaluation_loop_gets_a_bar_that_goes_away(cache_dir):
    from vlbench.data.shapes import build_shapes
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.retrieval import full_cross_scores
    from vlbench.tasks.vqa import VQATask

    dataset = build_shapes(None, {"train_images": 30, "val_images": 8, "test_images": 8}, cache_dir, quiet=True)
    task = VQATask(load_task_spec("vqa"), dataset)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    progress = RecordingProgress()
    with evaluation_progress(progress, "vilt s0"):
        batches = list(task.batches("test", 16, ("text",)))
        training = list(task.batches("train", 16, ("text",), shuffle=True))
        scores = full_cross_scores(lambda i, t: (i * 10 + t).astype(float), 3, 5, chunk=4)
    assert len(batches) == -(-task.num_examples("test") // 16) and training
    assert np.array_equal(scores, np.arange(3)[:, None] * 10 + np.arange(5)[None, :])
    # training batches are the trainer's bar; evaluation loops each get their own, and clean it up
    assert [b["description"] for b in progress.bars.values()] == ["vilt s0 scoring test", "vilt s0 cross-scoring pairs"]
    assert progress.bars[0] == {"description": "vilt s0 scoring test", "total": len(batches),
                                "advanced": len(batches), "removed": True}
    assert progress.bars[1]["total"] == 4 and progress.bars[1]["advanced"] == 4 and progress.bars[1]["removed"]
