"""The embedded "shapes world": a synthetic, deterministic, offline vision-language dataset.

``build_shapes`` (registered as dataset ``"shapes"``) returns images plus a balanced VQA table whose
answers no question string gives away; see docs/shapes.md.
"""

from vlbench.data.shapes.build import (
    GENERATOR_VERSION,
    ShapesOptions,
    build_shapes,
    cache_key,
    default_cache_dir,
    generate_shapes,
    parse_options,
)
from vlbench.data.shapes.world import Scene, ShapeObject

__all__ = [
    "GENERATOR_VERSION",
    "ShapesOptions",
    "build_shapes",
    "cache_key",
    "default_cache_dir",
    "generate_shapes",
    "parse_options",
    "Scene",
    "ShapeObject",
]
