"""Vectorised rendering of scenes to uint8 RGB arrays with precomputed anti-aliased shape masks."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from vlbench.data.shapes.world import COLORS, IMAGE_SIZE, SHAPES, SIZE_PIXELS, Scene

__all__ = ["PALETTE", "shape_mask", "render_scenes"]

# well separated in RGB so that a linear patch embedding can tell every pair apart
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 195, 20),
    "purple": (140, 50, 180),
}
_OVERSAMPLE = 4
_OBJECT_SHADE_JITTER = 12  # per-object brightness wobble, small next to the gaps between palette colours
_PIXEL_NOISE = 6  # per-pixel uniform noise on the whole image


@lru_cache(maxsize=None)
def shape_mask(shape: str, px: int) -> np.ndarray:
    """Coverage in [0, 1] of a ``px`` x ``px`` box by ``shape``, from 4x4 supersampling (anti-aliased edges)."""
    n = px * _OVERSAMPLE
    centres = (np.arange(n) + 0.5) / _OVERSAMPLE  # subpixel centres in pixel units
    y, x = np.meshgrid(centres, centres, indexing="ij")
    half = px / 2
    if shape == "circle":
        inside = (x - half) ** 2 + (y - half) ** 2 <= (half - 0.25) ** 2
    elif shape == "square":
        inside = (np.abs(x - half) <= half - 0.5) & (np.abs(y - half) <= half - 0.5)
    elif shape == "triangle":
        top, bottom = 0.5, px - 0.5
        inside = (y >= top) & (y <= bottom) & (np.abs(x - half) <= (y - top) / (bottom - top) * (half - 0.25))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    coverage = inside.reshape(px, _OVERSAMPLE, px, _OVERSAMPLE).mean(axis=(1, 3))
    return coverage.astype(np.float32)


def render_scenes(scenes: Sequence[Scene], rng: np.random.Generator, chunk: int = 512) -> np.ndarray:
    """Draw ``scenes`` into a uint8 array (N, 64, 64, 3); all randomness (shading, noise) comes from ``rng``."""
    out = np.empty((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    palette = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)
    color_index = {c: i for i, c in enumerate(COLORS)}
    shape_index = {s: i for i, s in enumerate(SHAPES)}
    for start in range(0, len(scenes), chunk):
        part = scenes[start : start + chunk]
        canvas = np.empty((len(part), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
        canvas[:] = np.array([s.background for s in part], dtype=np.float32)[:, None, None, :]
        # one flat record per object, grouped below by (shape, size) so each group is one fancy-index blend
        rows = [
            (i, shape_index[o.shape], o.size, o.bbox[0], o.bbox[1], color_index[o.color])
            for i, s in enumerate(part)
            for o in s.objects
        ]
        if rows:
            img = np.array([r[0] for r in rows])
            shp = np.array([r[1] for r in rows])
            size = np.array([r[2] for r in rows])
            x0 = np.array([r[3] for r in rows])
            y0 = np.array([r[4] for r in rows])
            shade = 1.0 + rng.integers(-_OBJECT_SHADE_JITTER, _OBJECT_SHADE_JITTER + 1, size=len(rows)) / 255.0
            colors = np.clip(palette[np.array([r[5] for r in rows])] * shade[:, None], 0, 255)
            for s_i, shape in enumerate(SHAPES):
                for size_name, px in SIZE_PIXELS.items():
                    sel = np.flatnonzero((shp == s_i) & (size == size_name))
                    if sel.size == 0:
                        continue
                    alpha = shape_mask(shape, px)[None, :, :, None]
                    ii = img[sel][:, None, None]
                    yy = (y0[sel][:, None] + np.arange(px))[:, :, None]
                    xx = (x0[sel][:, None] + np.arange(px))[:, None, :]
                    # objects never overlap (one per cell), so the gathered blocks are disjoint
                    under = canvas[ii, yy, xx]
                    canvas[ii, yy, xx] = alpha * colors[sel][:, None, None, :] + (1 - alpha) * under
        noise = rng.integers(-_PIXEL_NOISE, _PIXEL_NOISE + 1, size=canvas.shape, dtype=np.int16)
        out[start : start + len(part)] = np.clip(np.rint(canvas) + noise, 0, 255).astype(np.uint8)
    return out
