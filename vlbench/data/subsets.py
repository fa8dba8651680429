"""Seeded, image-level parts of a training split: nested fractions and k-shot draws.

The draw is by image: a seeded permutation of the split's distinct image ids (sorted, then permuted with
``numpy.random.default_rng(seed)``). A fraction ``f`` keeps the first ``ceil(f * N)`` images and every row
of them, so for one seed the subsets of growing fractions are nested and no image is split across the
kept and the dropped part. ``k_shot`` walks the same order: rows with an answer column keep, per answer,
the first ``k`` rows met; other tables keep the first ``k`` images. Validation and test stay whole.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional

import numpy as np

from vlbench.data.base import VLDataset
from vlbench.data.views import DatasetView
from vlbench.errors import DataError
from vlbench.specs import TaskSpec, TrainSubset

__all__ = ["image_order", "select_rows", "apply_train_subset", "ids_digest", "ANSWER_COLUMN"]

ANSWER_COLUMN = "multiple_choice_answer"


def image_order(image_ids: list[int], seed: int) -> list[int]:
    """The split's distinct image ids in the seeded order every draw walks (prefixes are the subsets)."""
    distinct = np.array(sorted({int(i) for i in image_ids}), dtype=np.int64)
    return distinct[np.random.default_rng(seed).permutation(len(distinct))].tolist()


def ids_digest(image_ids: list[int]) -> str:
    """sha256 of the chosen image ids (sorted, comma-joined): equal digests mean the same draw."""
    return hashlib.sha256(",".join(str(i) for i in sorted(image_ids)).encode()).hexdigest()


def select_rows(image_ids: list[int], subset: TrainSubset, seed: int,
                answers: Optional[list[str]] = None) -> tuple[list[int], dict[str, Any]]:
    """Row indices to keep (in table order) and the facts of the draw, for one split's ``image_id`` column."""
    order = image_order(image_ids, seed)
    rows_of: dict[int, list[int]] = {}
    for row, image_id in enumerate(image_ids):
        rows_of.setdefault(int(image_id), []).append(row)
    if subset.fraction is not None:
        chosen_images = order[: math.ceil(subset.fraction * len(order))]
        keep = sorted(r for image_id in chosen_images for r in rows_of[image_id])
    elif answers is not None:
        taken: dict[str, int] = {}
        keep = []
        for image_id in order:
            for row in rows_of[image_id]:
                if taken.get(answers[row], 0) < subset.k_shot:
                    taken[answers[row]] = taken.get(answers[row], 0) + 1
                    keep.append(row)
        keep.sort()
        chosen_images = sorted({int(image_ids[r]) for r in keep})
    else:
        chosen_images = order[: subset.k_shot]
        keep = sorted(r for image_id in chosen_images for r in rows_of[image_id])
    facts = {
        "rule": "fraction" if subset.fraction is not None else "k_shot",
        "fraction": subset.fraction,
        "k_shot": subset.k_shot,
        "per": None if subset.k_shot is None else ("answer" if answers is not None else "image"),
        "seed": seed,
        "images": len(chosen_images),
        "images_total": len(order),
        "examples": len(keep),
        "examples_total": len(image_ids),
        "image_ids_sha256": ids_digest(chosen_images),
    }
    return keep, facts


def apply_train_subset(dataset: VLDataset, task: TaskSpec, run_seed: int) -> VLDataset:
    """The dataset with the task's training split narrowed by ``task.train_subset`` (unchanged without one)."""
    subset = task.train_subset
    if subset is None:
        return dataset
    seed = run_seed if subset.seed is None else subset.seed

    def selector(kind: str, split: str, rows: Any) -> tuple[list[int], dict[str, Any]]:
        if "image_id" not in rows.column_names:
            raise DataError(f"task {task.name!r}: table {kind!r} split {split!r} has no image_id column to draw "
                            f"a train_subset by image; remove task.train_subset.")
        answers = list(rows[ANSWER_COLUMN]) if subset.k_shot is not None and ANSWER_COLUMN in rows.column_names else None
        keep, facts = select_rows([int(i) for i in rows["image_id"]], subset, seed, answers)
        if not keep:
            raise DataError(f"task {task.name!r}: train_subset keeps no {kind!r} rows of split {split!r}.")
        return keep, facts

    return DatasetView(dataset, {task.splits.train: selector}, "train_subset")
