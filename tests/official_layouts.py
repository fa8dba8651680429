"""Tiny datasets written in the official download layouts (file names, JSON schemas, image naming).

VQA v2 (visualqa.org), the Karpathy splits of COCO and Flickr30k (``dataset_coco.json`` /
``dataset_flickr30k.json``) and the Multi30k repository (``data/task1/raw``, ``data/task1/image_splits``),
each with small JPEG images, so that the dataset builders read exactly what a researcher downloads.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLORS = ["red", "blue", "green", "yellow"]
SHAPES = ["circle", "square", "triangle"]
GERMAN = {"red": "rote", "blue": "blaue", "green": "grüne", "yellow": "gelbe", "circle": "kreis", "square": "quadrat",
          "triangle": "dreieck"}


def _image(path: Path, color: str, size: tuple[int, int]) -> None:
    from PIL import Image

    rgb = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 230, 20)}[color]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, "JPEG", quality=90)


def _items(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(rng.choice(COLORS), rng.choice(SHAPES)) for _ in range(n)]


def write_vqav2(root: Path, per_split: int = 16) -> Path:
    """``v2_OpenEnded_mscoco_*_questions.json``, ``v2_mscoco_*_annotations.json``, ``train2014/``, ``val2014/``."""
    qid = 1
    for split, seed in (("train2014", 0), ("val2014", 1)):
        rows = []
        for k, (color, shape) in enumerate(_items(per_split, seed)):
            image_id = (1 if split == "train2014" else 500000) + k
            for question, answer, qtype, atype in (("what color is the shape?", color, "what color is the", "other"),
                                                   ("is there a circle?", "yes" if shape == "circle" else "no",
                                                    "is there a", "yes/no")):
                rows.append({"image_id": image_id, "question": question, "question_type": qtype, "answer_type": atype,
                             "answers": [answer] * 10, "color": color, "size": (64 + 16 * (k % 3), 48)})
        qid = write_vqav2_split(root, split, rows, first_question_id=qid)
    return root


def write_vqav2_split(root: Path, subset: str, rows: list[dict], first_question_id: int = 1) -> int:
    """One official subset (``train2014``/``val2014``): its questions and annotations files and a JPEG per image.

    Each row: ``image_id``, ``question``, ``question_type``, ``answer_type``, ``answers`` (ten strings), and
    optionally ``multiple_choice_answer`` (default: the most frequent answer), ``color`` and ``size`` of its
    image. Question ids count from ``first_question_id``; returns the next free one.
    """
    from collections import Counter

    questions, annotations = [], []
    qid = first_question_id
    for row in rows:
        image_id = row["image_id"]
        image = root / subset / f"COCO_{subset}_{image_id:012d}.jpg"
        if not image.exists():
            _image(image, row.get("color", COLORS[image_id % len(COLORS)]), row.get("size", (64, 48)))
        questions.append({"image_id": image_id, "question": row["question"], "question_id": qid})
        answers = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(row["answers"])]
        plurality = Counter(row["answers"]).most_common(1)[0][0]
        annotations.append({"question_id": qid, "image_id": image_id, "question_type": row["question_type"],
                            "answer_type": row["answer_type"],
                            "multiple_choice_answer": row.get("multiple_choice_answer", plurality), "answers": answers})
        qid += 1
    write_vqav2_files(root, subset, questions, annotations)
    return qid


def write_vqav2_files(root: Path, subset: str, questions: list[dict], annotations: list[dict]) -> None:
    """The official questions and annotations files of one subset, with their header fields."""
    info = {"description": "fixture", "version": "2.0"}
    (root / f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(json.dumps(
        {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": subset,
         "questions": questions}))
    (root / f"v2_mscoco_{subset}_annotations.json").write_text(json.dumps(
        {"info": info, "license": {}, "data_subtype": subset, "annotations": annotations}))


def _karpathy(images: list[dict], dataset: str) -> dict:
    return {"images": images, "dataset": dataset}


def _sentences(color: str, shape: str, imgid: int, start: int) -> list[dict]:
    raws = [f"A {color} {shape}.", f"The {shape} is {color}.", f"A {shape} coloured {color}.",
            f"One {color} {shape} on white.", f"There is a {color} {shape}."]
    return [{"raw": r, "tokens": r.lower().strip(".").split(), "imgid": imgid, "sentid": start + i}
            for i, r in enumerate(raws)]


def write_coco_karpathy(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``dataset_coco.json`` (Karpathy split, with restval) + ``train2014/`` and ``val2014/`` images."""
    counts = counts or {"train": 12, "restval": 4, "val": 6, "test": 6}
    images, imgid, sentid = [], 0, 0
    for split, n in counts.items():
        folder = "train2014" if split == "train" else "val2014"
        for color, shape in _items(n, imgid + 7):
            cocoid = 100 + imgid
            name = f"COCO_{folder}_{cocoid:012d}.jpg"
            _image(root / folder / name, color, (64, 48))
            sentences = _sentences(color, shape, imgid, sentid)
            images.append({"filepath": folder, "filename": name, "imgid": imgid, "split": split, "cocoid": cocoid,
                           "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
            imgid, sentid = imgid + 1, sentid + len(sentences)
    (root / "dataset_coco.json").write_text(json.dumps(_karpathy(images, "coco")))
    return root


def write_flickr30k(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``dataset_flickr30k.json`` (Karpathy split) + ``flickr30k-images/<id>.jpg``."""
    counts = counts or {"train": 12, "val": 6, "test": 6}
    images, imgid, sentid = [], 0, 0
    for split, n in counts.items():
        for color, shape in _items(n, imgid + 11):
            name = f"{1000091 + imgid}.jpg"
            _image(root / "flickr30k-images" / name, color, (64, 48 + 8 * (imgid % 2)))
            sentences = _sentences(color, shape, imgid, sentid)
            images.append({"filename": name, "imgid": imgid, "split": split,
                           "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
            imgid, sentid = imgid + 1, sentid + len(sentences)
    (root / "dataset_flickr30k.json").write_text(json.dumps(_karpathy(images, "flickr30k")))
    return root


def write_multi30k(root: Path, counts: dict[str, int] | None = None) -> Path:
    """The Multi30k repository layout: ``data/task1/raw/<split>.{en,de}``, ``data/task1/image_splits/<split>.txt``,
    plus the Flickr30k images in ``flickr30k-images/``."""
    counts = counts or {"train": 24, "val": 6, "test_2016_flickr": 6}
    raw, splits = root / "data" / "task1" / "raw", root / "data" / "task1" / "image_splits"
    raw.mkdir(parents=True, exist_ok=True)
    splits.mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in counts.items():
        en, de, names = [], [], []
        for color, shape in _items(n, k + 3):
            name = f"{2000000 + k}.jpg"
            _image(root / "flickr30k-images" / name, color, (64, 48))
            en.append(f"A {color} {shape} on a white background.")
            de.append(f"Ein {GERMAN[color]} {GERMAN[shape]} auf weißem Hintergrund.")
            names.append(name)
            k += 1
        (raw / f"{split}.en").write_text("\n".join(en) + "\n", encoding="utf-8")
        (raw / f"{split}.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (splits / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root
