"""Shapes builder: option validation, cache reuse and rebuild, atomic writes, the returned VLDataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import vlbench.data.shapes.build as build_mod
from vlbench.data.shapes import build_shapes, cache_key, default_cache_dir, parse_options
from vlbench.errors import DataError, SpecError
from vlbench.registry import DATASETS

SMALL = {"train_images": 60, "val_images": 20, "test_images": 20}


def _count_generations(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = build_mod.generate_shapes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "generate_shapes", counting)
    return calls


def test_returns_vldataset(tmp_path: Path) -> None:
    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    assert ds.name == "shapes" and len(ds.fingerprint) == 16
    assert set(ds.tables["vqa"]) == {"train", "val", "test"}
    assert ds.tables["vqa"]["train"].column_names == [
        "question_id", "image_id", "question", "question_type", "answer_type", "answers", "answer_confidence",
        "multiple_choice_answer",
    ]
    assert ds.images.pixels.dtype.is_floating_point is False and tuple(ds.images.pixels.shape) == (100, 64, 64, 3)
    some = ds.tables["vqa"]["test"]["image_id"][:5]
    assert tuple(ds.images.get(some).shape) == (5, 64, 64, 3)
    assert ds.info["seed"] == 0 and ds.info["options"]["train_images"] == 60 and ds.info["generator_version"]
    # every image's scene travels with it, per split, for tables derived later (captions, retrieval)
    assert ds.tables["scenes"]["test"].num_rows == 20 and '"objects"' in ds.tables["scenes"]["test"]["scene"][0]
    images = (tmp_path / "shapes" / ds.info["key"] / "images")
    from datasets import load_from_disk

    features = load_from_disk(str(images)).features
    assert type(features["pixels"]).__name__ == "Array3D" and features["pixels"].dtype == "uint8"


def test_registered_as_shapes() -> None:
    assert DATASETS.get("shapes") is build_shapes


def test_cache_reused_then_rebuilt_on_option_change(tmp_path: Path, monkeypatch) -> None:
    calls = _count_generations(monkeypatch)
    first = build_shapes(None, SMALL, tmp_path, quiet=True)
    again = build_shapes(None, dict(SMALL), tmp_path, quiet=True)
    assert len(calls) == 1, "an identical build is loaded from cache"
    assert again.fingerprint == first.fingerprint
    assert again.images.pixels.numpy().tobytes() == first.images.pixels.numpy().tobytes()
    for change in ({"seed": 1}, {"train_images": 61}, {"questions_per_image": 4}, {"question_mix": {"relation": 0}}):
        other = build_shapes(None, {**SMALL, **change}, tmp_path, quiet=True)
        assert other.fingerprint != first.fingerprint, change
    assert len(calls) == 5
    assert len([p for p in (tmp_path / "shapes").iterdir()]) == 5
    monkeypatch.setattr(build_mod, "GENERATOR_VERSION", "test-bump")
    assert cache_key(parse_options(SMALL)) != first.info["key"]
    build_shapes(None, SMALL, tmp_path, quiet=True)
    assert len(calls) == 6, "a new generator version rebuilds"


def test_force_rebuilds_identically(tmp_path: Path, monkeypatch) -> None:
    calls = _count_generations(monkeypatch)
    a = build_shapes(None, SMALL, tmp_path, quiet=True)
    b = build_shapes(None, SMALL, tmp_path, quiet=True, force=True)
    assert len(calls) == 2 and a.fingerprint == b.fingerprint
    assert a.tables["vqa"]["test"]["answers"][:] == b.tables["vqa"]["test"]["answers"][:]


def test_interrupted_build_leaves_no_cache(tmp_path: Path, monkeypatch) -> None:
    real_save = build_mod._save

    def dying_save(generated, folder):
        generated.images.save_to_disk(str(folder / "images"))  # half of the files are written...
        raise KeyboardInterrupt  # ...then the user presses Ctrl-C

    monkeypatch.setattr(build_mod, "_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        build_shapes(None, SMALL, tmp_path, quiet=True)
    root = tmp_path / "shapes"
    assert list(root.iterdir()) == [], "neither a final folder nor a temp folder is left"
    monkeypatch.setattr(build_mod, "_save", real_save)
    calls = _count_generations(monkeypatch)
    build_shapes(None, SMALL, tmp_path, quiet=True)
    assert len(calls) == 1 and len(list(root.iterdir())) == 1


def test_killed_build_temp_is_ignored_and_cleaned(tmp_path: Path) -> None:
    key = cache_key(parse_options(SMALL))
    root = tmp_path / "shapes"
    # a process that died mid-write (pid 2**22 + 1 is above Linux's default pid_max) left its temp folder
    stale = root / f".tmp-{key}-{2**22 + 1}-deadbeef"
    (stale / "images").mkdir(parents=True)
    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    assert ds.info["key"] == key
    assert not stale.exists()
    assert sorted(p.name for p in root.iterdir()) == [key]


def test_damaged_cache_is_refused_then_forced(tmp_path: Path, monkeypatch) -> None:
    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    folder = tmp_path / "shapes" / ds.info["key"]
    for f in (folder / "vqa" / "test").glob("*.arrow"):
        f.write_bytes(b"not arrow")
    calls = _count_generations(monkeypatch)
    with pytest.raises(DataError, match="--force"):
        build_shapes(None, SMALL, tmp_path, quiet=True)
    again = build_shapes(None, SMALL, tmp_path, quiet=True, force=True)
    assert len(calls) == 1
    assert again.tables["vqa"]["test"].num_rows == ds.tables["vqa"]["test"].num_rows
    assert again.fingerprint == ds.fingerprint


def test_same_length_edit_of_an_arrow_file_is_detected(tmp_path: Path) -> None:
    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    folder = tmp_path / "shapes" / ds.info["key"]
    arrow = next((folder / "vqa" / "test").glob("*.arrow"))
    data = arrow.read_bytes()
    answer = ds.tables["vqa"]["test"]["multiple_choice_answer"][0].encode()
    at = data.index(answer)  # rename one answer in place: same length, still valid Arrow
    arrow.write_bytes(data[:at] + b"X" * len(answer) + data[at + len(answer):])
    with pytest.raises(DataError) as info:
        build_shapes(None, SMALL, tmp_path, quiet=True)
    message = str(info.value)
    assert str(arrow) in message and "does not match" in message and "vlbench data verify" in message


def test_fingerprint_follows_content_not_only_options(tmp_path: Path) -> None:
    from vlbench.data.integrity import content_fingerprint, write_manifest

    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    folder = tmp_path / "shapes" / ds.info["key"]
    arrow = next((folder / "images").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[-100] ^= 0xFF
    arrow.write_bytes(bytes(data))
    # the same options over different bytes (manifest rewritten, as a deliberate edit would) -> another fingerprint
    assert content_fingerprint(write_manifest(folder)) != ds.fingerprint


def test_second_build_only_reads_the_cache(tmp_path: Path, monkeypatch) -> None:
    generated = _count_generations(monkeypatch)
    first = build_shapes(None, SMALL, tmp_path, quiet=True)
    folder = tmp_path / "shapes" / first.info["key"]

    def files() -> dict[Path, tuple[int, int, int]]:
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}

    before = files()
    second = build_shapes(None, SMALL, tmp_path, quiet=True)
    # nothing generated the second time, and no file of the cache replaced, touched or added
    assert len(generated) == 1 and len(before) > 3
    assert files() == before
    assert second.fingerprint == first.fingerprint
    assert second.images.pixels.numpy().tobytes() == first.images.pixels.numpy().tobytes()


@pytest.mark.parametrize(
    "options, field",
    [
        ({"train_imgs": 10}, "train_imgs"),
        ({"seed": -1}, "seed"),
        ({"test_images": 0}, "test_images"),
        ({"questions_per_image": "many"}, "questions_per_image"),
        ({"val_images": 10**7}, "val_images"),
        ({"question_mix": {"colour": 1.0}}, "question_mix"),
        ({"question_mix": {"color": -1.0}}, "question_mix"),
        ({"question_mix": dict.fromkeys(["color", "shape", "count", "exist", "relation"], 0)}, "question_mix"),
    ],
)
def test_bad_options_name_the_field(tmp_path: Path, options: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        build_shapes(None, options, tmp_path, quiet=True)
    message = str(info.value)
    assert repr(field) in message and "\n" not in message
    assert not (tmp_path / "shapes").exists()


def test_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="generated"):
        build_shapes("/some/folder", SMALL, tmp_path, quiet=True)


def test_unwritable_cache_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cache"):
        build_shapes(None, SMALL, blocker, quiet=True)


def test_default_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VLBENCH_CACHE")
    assert default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "vlbench"


def test_same_bytes_across_cache_roundtrip(tmp_path: Path) -> None:
    from vlbench.data.shapes.build import generate_shapes

    ds = build_shapes(None, SMALL, tmp_path, quiet=True)
    fresh = generate_shapes(parse_options(SMALL))
    pixels = fresh.images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    assert ds.images.pixels.numpy().tobytes() == pixels.tobytes()
    assert ds.tables["vqa"]["val"].to_list() == fresh.tables["vqa"]["val"].to_list()
