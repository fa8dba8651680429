"""Shapes world: determinism of scenes, pixels and tables; scene layout; rendering matches the scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlbench.data.shapes.build import ShapesOptions, generate_shapes
from vlbench.data.shapes.render import PALETTE, render_scenes, shape_mask
from vlbench.data.shapes.world import CELL, GRID, MAX_OBJECTS, MIN_OBJECTS, Scene, sample_scenes

SMALL = dict(train_images=60, val_images=20, test_images=20)


def _table_bytes(generated) -> dict[str, bytes]:
    """Every table serialised through Arrow IPC, so equality means equal bytes, not just equal values."""
    import pyarrow as pa

    out = {}
    for kind, dd in generated.tables.items():
        for split, ds in dd.items():
            sink = pa.BufferOutputStream()
            table = ds.data.table
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            out[f"{kind}/{split}"] = sink.getvalue().to_pybytes()
    return out


@pytest.fixture(scope="module")
def twice() -> tuple:
    opts = ShapesOptions(seed=3, **SMALL)
    return generate_shapes(opts), generate_shapes(opts)


def test_same_seed_same_bytes(twice) -> None:
    a, b = twice
    pa_ = a.images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    pb = b.images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    assert pa_.dtype == np.uint8 and pa_.shape == (100, 64, 64, 3)
    assert pa_.tobytes() == pb.tobytes()
    assert a.images["scene"][:] == b.images["scene"][:]
    assert _table_bytes(a) == _table_bytes(b)


def test_different_seed_differs(twice) -> None:
    a, _ = twice
    c = generate_shapes(ShapesOptions(seed=4, **SMALL))
    pa_ = a.images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    pc = c.images.with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    assert pa_.tobytes() != pc.tobytes()
    assert _table_bytes(a)["vqa/test"] != _table_bytes(c)["vqa/test"]


def test_split_streams_are_independent() -> None:
    # growing the train split must not change a single byte of the test split
    small = generate_shapes(ShapesOptions(seed=0, **SMALL))
    big = generate_shapes(ShapesOptions(seed=0, **{**SMALL, "train_images": 90}))
    test_rows = lambda g: [i for i, s in enumerate(g.images["split"][:]) if s == "test"]  # noqa: E731
    ps = small.images.select(test_rows(small)).with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    pb = big.images.select(test_rows(big)).with_format("numpy", columns=["pixels"], dtype=np.uint8)[:]["pixels"]
    assert ps.tobytes() == pb.tobytes()
    assert _table_bytes(small)["vqa/test"] == _table_bytes(big)["vqa/test"]


def test_no_global_rng_use() -> None:
    np.random.seed(1)
    a = sample_scenes(np.random.default_rng(5), 30)
    np.random.seed(2)
    b = sample_scenes(np.random.default_rng(5), 30)
    assert a == b


def test_scene_layout_and_json_roundtrip() -> None:
    scenes = sample_scenes(np.random.default_rng(0), 300)
    for scene in scenes:
        assert MIN_OBJECTS <= len(scene.objects) <= MAX_OBJECTS
        cells = [(o.row, o.col) for o in scene.objects]
        assert len(set(cells)) == len(cells), "at most one object per cell"
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            # the whole object lies inside its own 16-px cell, so one ViLT patch sees exactly one object
            assert o.col * CELL <= x0 < x1 <= (o.col + 1) * CELL
            assert o.row * CELL <= y0 < y1 <= (o.row + 1) * CELL
            assert 0 <= o.row < GRID and 0 <= o.col < GRID
        assert Scene.from_json(scene.to_json()) == scene
        assert set(json.loads(scene.to_json())["objects"][0]) == {"shape", "color", "size", "row", "col", "bbox"}


def test_rendered_pixels_follow_the_scene() -> None:
    scenes = sample_scenes(np.random.default_rng(1), 40)
    pixels = render_scenes(scenes, np.random.default_rng(2))
    for scene, image in zip(scenes, pixels):
        occupied = np.zeros((64, 64), dtype=bool)
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            mask = shape_mask(o.shape, x1 - x0) > 0.99
            inside = image[y0:y1, x0:x1][mask].astype(float).mean(axis=0)
            # fully covered pixels carry the palette colour (up to shading jitter and pixel noise)
            assert np.abs(inside - np.array(PALETTE[o.color])).max() < 25, (o, inside)
            occupied[y0:y1, x0:x1] = True
        background = image[~occupied].astype(float).mean(axis=0)
        assert np.abs(background - np.array(scene.background)).max() < 3


def test_shape_masks_differ() -> None:
    for px in (9, 14):
        circle, square, triangle = (shape_mask(s, px) for s in ("circle", "square", "triangle"))
        assert circle.sum() < square.sum() and triangle.sum() < circle.sum()
        # a triangle points up: its top row is nearly empty, its bottom row nearly full
        assert triangle[0].sum() < triangle[-1].sum()
