"""Tiny datasets in the exact official layouts (file names, JSON schemas, image naming), made with PIL.

Images are small solid-colour JPEGs with a darker square in one corner, so a colour question has a
visual answer. ``truncate`` cuts one JPEG in half (the build must skip it); ``extra`` files are not
referenced by annotations.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.official_layouts import write_vqav2_files

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
NAMES = list(COLORS)


def jpeg(path: Path, color: str, size: tuple[int, int] = (40, 30)) -> Path:
    """A small JPEG of one colour (with a dark corner square)."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, COLORS[color])
    ImageDraw.Draw(img).rectangle([0, 0, size[0] // 3, size[1] // 3], fill=(20, 20, 20))
    img.save(path, format="JPEG", quality=90)
    return path


def truncate(path: Path) -> Path:
    """Cut the last bytes of a file (as an interrupted download would; the header stays readable)."""
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    return path


def color_of(image_id: int) -> str:
    """The colour of a fixture image."""
    return NAMES[image_id % len(NAMES)]


def make_vqav2(root: Path, train_ids=range(1, 13), val_ids=range(101, 107), truncated: int | None = 3) -> Path:
    """``v2_*`` questions/annotations JSON for train2014 and val2014, and COCO-named JPEGs."""
    qid = 0
    for subset, ids in (("train2014", train_ids), ("val2014", val_ids)):
        questions, annotations = [], []
        for image_id in ids:
            jpeg(root / subset / f"COCO_{subset}_{image_id:012d}.jpg", color_of(image_id))
            for q, (text, answer, qtype, atype) in enumerate([
                ("what color is the picture?", color_of(image_id), "what color is the", "other"),
                ("is there a dark square?", "yes", "is there a", "yes/no"),
            ]):
                qid += 1
                question_id = image_id * 10 + q
                questions.append({"image_id": image_id, "question": text, "question_id": question_id})
                humans = [answer] * 8 + ["dunno", answer]
                annotations.append({
                    "question_id": question_id, "image_id": image_id, "question_type": qtype, "answer_type": atype,
                    "multiple_choice_answer": answer,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(humans)],
                })
        write_vqav2_files(root, subset, questions, annotations)
    if truncated is not None:
        truncate(root / "train2014" / f"COCO_train2014_{truncated:012d}.jpg")
    return root


def caption_sentences(image_id: int, first_sentid: int) -> list[dict]:
    """The five Karpathy ``sentences`` of a fixture image (``sentid`` from ``first_sentid``)."""
    color = color_of(image_id)
    raws = [f"A {color} picture.", f"a {color} image with a dark corner", f"The {color} background.",
            f"something {color}", f"a dark square on {color}"]
    return [{"tokens": r.lower().strip(".").split(), "raw": r, "imgid": image_id, "sentid": first_sentid + k}
            for k, r in enumerate(raws)]


def make_coco_karpathy(root: Path, truncated: int | None = None) -> Path:
    """``dataset_coco.json`` (train/restval/val/test) and COCO 2014 image folders."""
    plan = [("train", 8), ("restval", 3), ("val", 4), ("test", 6)]
    images, image_id, sentid = [], 1, 0
    for split, n in plan:
        for _ in range(n):
            subset = "train2014" if split == "train" else "val2014"
            name = f"COCO_{subset}_{image_id:012d}.jpg"
            jpeg(root / subset / name, color_of(image_id))
            images.append({"filepath": subset, "sentids": list(range(sentid, sentid + 5)), "filename": name,
                           "imgid": len(images), "split": split, "sentences": caption_sentences(image_id, sentid),
                           "cocoid": image_id})
            image_id += 1
            sentid += 5
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    if truncated is not None:
        truncate(next(root.glob(f"*/COCO_*_{truncated:012d}.jpg")))
    return root


def make_flickr30k(root: Path) -> Path:
    """``dataset_flickr30k.json`` and ``flickr30k-images/``."""
    images, sentid = [], 0
    for k, split in enumerate(["train"] * 8 + ["val"] * 3 + ["test"] * 4):
        image_id = 1000000 + k * 7
        name = f"{image_id}.jpg"
        jpeg(root / "flickr30k-images" / name, color_of(image_id))
        images.append({"sentids": list(range(sentid, sentid + 5)), "imgid": k, "sentences": caption_sentences(image_id, sentid),
                       "split": split, "filename": name})
        sentid += 5
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return root


GERMAN_COLORS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb"}


def make_multi30k(root: Path, images_dir: Path | None = None) -> Path:
    """The Multi30k repository layout (train gzipped, val/test plain) and the Flickr30k images it names."""
    images_dir = images_dir or root / "flickr30k-images"
    raw = root / "data" / "task1" / "raw"
    splits_dir = root / "data" / "task1" / "image_splits"
    raw.mkdir(parents=True)
    splits_dir.mkdir(parents=True)
    k = 0
    for split, n in (("train", 12), ("val", 4), ("test_2016_flickr", 4)):
        en, de, names = [], [], []
        for _ in range(n):
            image_id = 2000000 + k
            k += 1
            jpeg(images_dir / f"{image_id}.jpg", color_of(image_id))
            color = color_of(image_id)
            en.append(f"A {color} picture with a dark square.")
            de.append(f"Ein {GERMAN_COLORS[color]}es Bild mit einem dunklen Quadrat.")
            names.append(f"{image_id}.jpg")
        for lang, lines in (("en", en), ("de", de)):
            text = "\n".join(lines) + "\n"
            if split == "train":
                with gzip.open(raw / f"{split}.{lang}.gz", "wt", encoding="utf-8") as handle:
                    handle.write(text)
            else:
                (raw / f"{split}.{lang}").write_text(text, encoding="utf-8")
        (splits_dir / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def make_hf_vqa(root: Path, truncated: int | None = None) -> Path:
    """A ``save_to_disk`` DatasetDict with an ``Image()`` column, questions and VQA-style answer records."""
    import io

    from datasets import Dataset, DatasetDict, Features, Image, List, Value
    from PIL import Image as PILImage

    def encoded(color: str) -> bytes:
        buf = io.BytesIO()
        PILImage.new("RGB", (20, 16), COLORS[color]).save(buf, format="PNG")
        return buf.getvalue()

    features = Features({"img": Image(), "img_id": Value("int64"), "q": Value("string"),
                         "ans": List(Value("string"))})
    parts = {}
    for split, ids in (("train", range(0, 10)), ("validation", range(10, 14)), ("test", range(14, 18))):
        rows = {"img": [], "img_id": [], "q": [], "ans": []}
        for image_id in ids:
            for question in ("what color?", "what colour is it?"):
                data = encoded(color_of(image_id))
                rows["img"].append({"bytes": data[: len(data) - 20] if image_id == truncated else data, "path": None})
                rows["img_id"].append(image_id)
                rows["q"].append(question)
                rows["ans"].append([color_of(image_id)] * 10)
        parts[split] = Dataset.from_dict(rows, features=features)
    DatasetDict(parts).save_to_disk(str(root))
    return root
