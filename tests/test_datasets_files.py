"""Builders of on-disk datasets on fixtures in the official layouts: tables, splits, skipped images, errors, caches."""

from __future__ import annotations

import json
import pickle
from functools import partial

import numpy as np
import pytest
import torch

from tests import dataset_fixtures as fx
from vlbench.data.files.store import check_image
from vlbench.errors import DataError, SpecError
from vlbench.registry import DATASETS

HF_COLUMNS = {"image": "img", "image_id": "img_id", "question": "q", "answers": "ans"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Every fixture dataset once per module."""
    base = tmp_path_factory.mktemp("official")
    return {
        "vqav2": fx.make_vqav2(base / "vqa"),
        "coco-karpathy": fx.make_coco_karpathy(base / "coco"),
        "flickr30k": fx.make_flickr30k(base / "f30k"),
        "multi30k": fx.make_multi30k(base / "m30k"),
        "hf": fx.make_hf_vqa(base / "hf"),
    }


def build(name, path, options=None, cache=None, **kw):
    return DATASETS.get(name)(str(path), options or {}, cache, quiet=True, **kw)


def test_check_image_spots_truncation_missing_and_garbage(tmp_path):
    good = fx.jpeg(tmp_path / "a.jpg", "red")
    assert check_image(good) is None
    cut = fx.jpeg(tmp_path / "b.jpg", "red")
    cut.write_bytes(cut.read_bytes()[:-40])  # header intact, end marker gone
    assert "truncated" in check_image(cut)
    assert check_image(tmp_path / "nope.jpg") == "missing"
    (tmp_path / "c.jpg").write_bytes(b"not an image at all")
    assert "unreadable" in check_image(tmp_path / "c.jpg")


def test_vqav2_splits_columns_and_skipped_image(roots, tmp_path, capsys):
    ds = DATASETS.get("vqav2")(str(roots["vqav2"]), {}, tmp_path, quiet=False)
    vqa = ds.tables["vqa"]
    assert vqa["train"].column_names == ["question_id", "image_id", "question", "question_type", "answer_type", "answers",
                                         "answer_confidence", "multiple_choice_answer"]
    # image 3 of train2014 is truncated: its two questions are dropped, the rest stay
    assert ds.info["skipped_images"]["count"] == 1
    assert "COCO_train2014_000000000003.jpg (truncated (no JPEG end marker))" in ds.info["skipped_images"]["first"][0]
    assert "skipped 1 unreadable" in capsys.readouterr().err
    train_ids, val_ids = set(vqa["train"]["image_id"]), set(vqa["val"]["image_id"])
    assert 3 not in train_ids | val_ids and not train_ids & val_ids
    # 12 train2014 images, 2% held out -> round(0.24) = 0 -> at least one image (2 questions)
    assert len(val_ids) == 1 and vqa["val"].num_rows == 2 and vqa["train"].num_rows == (12 - 1 - 1) * 2
    assert train_ids | val_ids == set(range(1, 13)) - {3}
    # test is val2014 in full: 6 images x 2 questions
    assert vqa["test"].num_rows == 12 and set(vqa["test"]["image_id"]) == set(range(101, 107))
    pixels = ds.images.load(101)
    assert pixels.dtype == np.uint8 and pixels.shape == (30, 40, 3)
    assert tuple(int(v) for v in pixels[20, 30]) == pytest.approx(fx.COLORS[fx.color_of(101)], abs=12)
    with pytest.raises(DataError, match=r"vqav2: 1 unreadable or truncated image\(s\), e\.g\. .*COCO_train2014_000000000003"):
        build("vqav2", roots["vqav2"], {"strict_images": True}, tmp_path)


def test_vqav2_trainval_mode_and_seeded_slices(roots, tmp_path):
    ds = build("vqav2", roots["vqav2"], {"split_mode": "trainval", "minival_images": 2}, tmp_path)
    vqa = ds.tables["vqa"]
    minival = set(vqa["minival"]["image_id"])
    assert len(minival) == 2 and minival <= set(range(101, 107))
    assert not minival & set(vqa["train"]["image_id"]) and set(range(101, 107)) - minival <= set(vqa["train"]["image_id"])
    other = build("vqav2", roots["vqav2"], {"split_mode": "trainval", "minival_images": 2, "split_seed": 5}, tmp_path)
    assert other.fingerprint != ds.fingerprint


def test_missing_annotation_file_is_one_line(tmp_path):
    root = fx.make_vqav2(tmp_path / "v", truncated=None)
    (root / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(DataError) as info:
        build("vqav2", root, {}, tmp_path / "c")
    message = str(info.value)
    assert "v2_mscoco_val2014_annotations.json" in message and str(root) in message and "\n" not in message


def test_unknown_option_lists_the_known_ones(roots, tmp_path):
    with pytest.raises(SpecError) as info:
        build("coco-karpathy", roots["coco-karpathy"], {"train_images": 10}, tmp_path)
    assert "'train_images'" in str(info.value) and "restval_in_train" in str(info.value)


def _shape(tables) -> dict[str, tuple[list[int], int]]:
    """split -> (its image ids in table order, without repeats; its row count)."""
    return {s: (list(dict.fromkeys(t["image_id"])), t.num_rows) for s, t in tables.items()}


def _words(table) -> set[str]:
    return {w.strip(".").lower() for caption in table["caption"] for w in caption.split()}


FIXTURE_WORDS = {"a", "the", "picture", "image", "with", "dark", "corner", "background", "something", "square", "on"}


def test_coco_karpathy_splits_captions_and_vocabulary(roots, tmp_path):
    # fixture: train 1-8, restval 9-11, val 12-15, test 16-21 (cocoids in file order), 5 captions each
    caps = build("coco-karpathy", roots["coco-karpathy"], {}, tmp_path).tables["captions"]
    assert caps["train"].column_names == ["caption_id", "image_id", "caption"]
    assert _shape(caps) == {"train": (list(range(1, 12)), 55), "restval": ([9, 10, 11], 15), "val": ([12, 13, 14, 15], 20),
                            "test": (list(range(16, 22)), 30), "test1k": (list(range(16, 22)), 30)}
    # captions are the `raw` sentences, caption ids their `sentid`s, five per image in file order
    assert caps["train"]["caption"][:5] == [r["raw"] for r in fx.caption_sentences(1, 0)]
    assert caps["test"]["caption_id"] == list(range(75, 105)) and caps["val"]["caption_id"] == list(range(55, 75))
    assert _words(caps["train"]) == FIXTURE_WORDS | set(fx.NAMES)
    assert _words(caps["val"]) == FIXTURE_WORDS | {fx.color_of(i) for i in range(12, 16)}
    no_restval = build("coco-karpathy", roots["coco-karpathy"], {"restval_in_train": False}, tmp_path).tables["captions"]
    assert _shape(no_restval)["train"] == (list(range(1, 9)), 40) and _shape(no_restval)["restval"] == ([9, 10, 11], 15)


def test_coco_karpathy_1k_test_is_the_first_images_in_file_order(tmp_path, monkeypatch):
    """test1k is the first TEST_FOLD_IMAGES test images as the file lists them: not the last, not the lowest ids,
    not the first rows (captions)."""
    from vlbench.data.files import karpathy

    root = fx.make_coco_karpathy(tmp_path / "coco")
    data = json.loads((root / "dataset_coco.json").read_text())
    test = [e for e in data["images"] if e["split"] == "test"]
    data["images"] = [e for e in data["images"] if e["split"] != "test"] + [test[i] for i in (3, 5, 0, 4, 1, 2)]
    (root / "dataset_coco.json").write_text(json.dumps(data))
    monkeypatch.setattr(karpathy, "TEST_FOLD_IMAGES", 4)
    caps = build("coco-karpathy", root, {}, tmp_path / "cache").tables["captions"]
    assert _shape(caps)["test"] == ([19, 21, 16, 20, 17, 18], 30)
    assert _shape(caps)["test1k"] == ([19, 21, 16, 20], 20)
    assert build("coco-karpathy", root, {}, tmp_path / "cache").images.load(19).shape == (30, 40, 3)


def test_flickr30k_and_multi30k(roots, tmp_path):
    # flickr30k fixture: images 1000000 + 7k, k = 0..14: train k < 8, val 8..10, test 11..14
    f30k = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    ids = [1000000 + 7 * k for k in range(15)]
    assert _shape(f30k.tables["captions"]) == {"train": (ids[:8], 40), "val": (ids[8:11], 15), "test": (ids[11:], 20)}
    assert sorted(f30k.images.ids()) == ids
    assert _words(f30k.tables["captions"]["test"]) == FIXTURE_WORDS | {fx.color_of(i) for i in ids[11:]}
    # multi30k fixture: images 2000000 + k, one sentence pair each: train k < 12, val 12..15, test 16..19
    m = build("multi30k", roots["multi30k"], {}, tmp_path)
    vmt = m.tables["vmt"]
    assert _shape(vmt) == {"train": (list(range(2000000, 2000012)), 12), "val": (list(range(2000012, 2000016)), 4),
                           "test": (list(range(2000016, 2000020)), 4)}
    assert vmt["val"]["pair_id"] == [1_000_000 + k for k in range(4)]
    for split in vmt:  # line i of each language and of the image list belong together
        for row in vmt[split]:
            color = fx.color_of(row["image_id"])
            assert row["source"] == f"A {color} picture with a dark square."
            assert row["target"] == f"Ein {fx.GERMAN_COLORS[color]}es Bild mit einem dunklen Quadrat."
    de_en = build("multi30k", roots["multi30k"], {"source_lang": "de", "target_lang": "en"}, tmp_path)
    assert de_en.tables["vmt"]["test"]["source"] == vmt["test"]["target"]
    assert de_en.tables["vmt"]["test"]["target"] == vmt["test"]["source"]
    assert de_en.fingerprint != m.fingerprint


def test_multi30k_missing_image_split_names_the_file(tmp_path):
    root = fx.make_multi30k(tmp_path / "m")
    (root / "data" / "task1" / "image_splits" / "val.txt").unlink()
    with pytest.raises(DataError, match=r"val\.txt.*image_splits"):
        build("multi30k", root, {}, tmp_path / "c")


def test_hf_from_save_to_disk_folder(roots, tmp_path):
    ds = build("hf", roots["hf"], {"columns": HF_COLUMNS}, tmp_path)
    vqa = ds.tables["vqa"]
    assert {s: t.num_rows for s, t in vqa.items()} == {"train": 20, "validation": 8, "test": 8}
    assert vqa["train"][0]["answers"] == ["red"] * 10 and vqa["train"][0]["multiple_choice_answer"] == "red"
    assert tuple(int(v) for v in ds.images.load(2)[0, 0]) == fx.COLORS[fx.color_of(2)]
    with pytest.raises(DataError, match="no column"):
        build("hf", roots["hf"], {"columns": {**HF_COLUMNS, "question": "question_text"}}, tmp_path)


def test_hf_truncated_image_is_skipped_or_refused(tmp_path):
    root = fx.make_hf_vqa(tmp_path / "hf", truncated=11)
    ds = build("hf", root, {"columns": HF_COLUMNS}, tmp_path / "c")
    assert ds.info["skipped_images"]["count"] == 1 and "row 2" in ds.info["skipped_images"]["first"][0]
    assert ds.tables["vqa"]["validation"].num_rows == 6 and 11 not in ds.tables["vqa"]["validation"]["image_id"]
    with pytest.raises(DataError, match="1 unreadable or truncated"):
        build("hf", root, {"columns": HF_COLUMNS, "strict_images": True}, tmp_path / "c")


def test_cache_reused_and_same_length_edit_detected(roots, tmp_path, monkeypatch):
    first = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    import PIL.Image

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    again = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    assert again.fingerprint == first.fingerprint and not opened, "a cached build checks no image again"
    arrow = next((tmp_path / "flickr30k" / first.fingerprint / "captions" / "test").glob("*.arrow"))
    data = arrow.read_bytes()
    at = data.index(b"picture")
    arrow.write_bytes(data[:at] + b"PICTURE" + data[at + 7:])
    with pytest.raises(DataError, match="does not match.*vlbench data verify"):
        build("flickr30k", roots["flickr30k"], {}, tmp_path)


def test_fingerprint_follows_annotation_content(tmp_path):
    root = fx.make_flickr30k(tmp_path / "f")
    a = build("flickr30k", root, {}, tmp_path / "c")
    data = json.loads((root / "dataset_flickr30k.json").read_text())
    data["images"][0]["sentences"][0]["raw"] = "A different caption."
    (root / "dataset_flickr30k.json").write_text(json.dumps(data))
    b = build("flickr30k", root, {}, tmp_path / "c")
    assert a.fingerprint != b.fingerprint and b.tables["captions"]["train"]["caption"][0] == "A different caption."


def test_decoded_cache_is_reused_without_decoding(roots, tmp_path, monkeypatch):
    from vlbench.data.images import SquareResize, pixel_batch

    opts = {"decoded_cache": True}
    ds = build("flickr30k", roots["flickr30k"], opts, tmp_path)
    ids = ds.images.ids()[:3]
    first = pixel_batch(ds.images, ids, SquareResize(16), 16)["pixel_values"]
    folder = ds.images.folder(SquareResize(16))
    assert (folder / "pixels.arrow").is_file()
    from datasets import Dataset

    assert type(Dataset.from_file(str(folder / "pixels.arrow")).features["pixels"]).__name__ == "Array3D"
    import PIL.Image

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    second = build("flickr30k", roots["flickr30k"], opts, tmp_path)  # a later run: new store, same cache
    again = pixel_batch(second.images, ids, SquareResize(16), 16)["pixel_values"]
    assert not opened, "the second run decodes no image"
    assert torch.equal(first, again)
    # the cached pixels are the uncached ones up to uint8 rounding of the resize
    plain = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    direct = pixel_batch(plain.images, ids, SquareResize(16), 16)["pixel_values"]
    assert first.shape == direct.shape == (3, 3, 16, 16) and (first - direct).abs().mean() < 0.05


def test_collate_is_picklable_and_deterministic(roots, tmp_path):
    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    ds = build("vqav2", roots["vqav2"], {}, tmp_path)
    task = VQATask(load_task_spec("vqa"), ds)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    collate = partial(task.collate, "test", modalities=("text", "image"))
    clone = pickle.loads(pickle.dumps(collate))
    a, b = collate([0, 3, 5]), clone([0, 3, 5])
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert a["pixel_values"].shape == (3, 3, 64, 64) and a["input_ids"].shape[1] == int(a["attention_mask"].sum(1).max())


def test_task_checks_columns_before_training(roots, tmp_path):
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vmt import VMTTask

    ds = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    with pytest.raises(DataError, match="flickr30k.*no 'vmt' data"):
        VMTTask(load_task_spec("vmt"), ds)
    m = build("multi30k", roots["multi30k"], {}, tmp_path)
    with pytest.raises(DataError) as info:
        VMTTask(load_task_spec("vmt-masked"), m)
    assert "'multi30k', table 'vmt', split 'train' has no column(s) source_masked" in str(info.value)


def test_retrieval_states_of_different_image_sizes_are_padded_with_a_mask():
    from vlbench.tasks.retrieval import concat_states

    a = {"pixel_values": torch.ones(2, 3, 4, 6)}
    b = {"pixel_values": torch.full((1, 3, 5, 3), 2.0), "pixel_mask": torch.ones(1, 5, 3, dtype=torch.long)}
    out = concat_states([a, b])
    assert out["pixel_values"].shape == (3, 3, 5, 6) and out["pixel_mask"].shape == (3, 5, 6)
    assert out["pixel_mask"][0].sum() == 24 and out["pixel_mask"][2].sum() == 15
    assert torch.equal(out["pixel_values"][0, :, :4, :], torch.ones(3, 4, 6)) and out["pixel_values"][0, :, 4].abs().sum() == 0


def test_dataloader_workers_give_the_same_batches(roots, tmp_path):
    from torch.utils.data import DataLoader

    from vlbench.data.text import build_word_vocab, word_level_tokenizer
    from vlbench.specs import load_task_spec
    from vlbench.tasks.vqa import VQATask

    ds = build("vqav2", roots["vqav2"], {}, tmp_path)
    task = VQATask(load_task_spec("vqa"), ds)
    task.prepare(word_level_tokenizer(build_word_vocab(task.training_texts())))
    collate = partial(task.collate, "test", modalities=("text", "image"))

    def batches(workers):
        loader = DataLoader(range(task.num_examples("test")), batch_size=5, collate_fn=collate, num_workers=workers)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_image_damaged_after_the_build_is_a_clear_error_at_load(tmp_path):
    root = fx.make_flickr30k(tmp_path / "f")
    ds = build("flickr30k", root, {}, tmp_path / "c")
    victim = root / "flickr30k-images" / "1000000.jpg"
    victim.write_bytes(b"\xff\xd8" + b"\x00" * 50 + b"\xff\xd9")
    with pytest.raises(DataError) as info:
        ds.images.load(1000000)
    assert str(victim) in str(info.value) and "\n" not in str(info.value)


def test_decoded_cache_with_an_hf_image_processor(roots, tmp_path):
    from transformers import ViltImageProcessor

    from vlbench.data.images import ProcessorTransform, pixel_batch

    transform = ProcessorTransform(ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=32))
    cached = build("flickr30k", roots["flickr30k"], {"decoded_cache": True}, tmp_path)
    plain = build("flickr30k", roots["flickr30k"], {}, tmp_path)
    ids = cached.images.ids()[:3]
    a, b = pixel_batch(cached.images, ids, transform, 32), pixel_batch(plain.images, ids, transform, 32)
    assert set(a) == set(b) == {"pixel_values", "pixel_mask"}
    # the processor's resize of an already-resized image is the identity: same tensors up to uint8 rounding
    assert a["pixel_values"].shape == b["pixel_values"].shape and (a["pixel_values"] - b["pixel_values"]).abs().max() < 0.02
    from datasets import Dataset

    stored = Dataset.from_file(str(cached.images.folder(transform) / "pixels.arrow"))
    assert stored.column_names == ["image_id", "height", "width", "pixels"] and stored.num_rows == len(cached.images.ids())
