"""Datasets by the name a task or ``--dataset`` gives them: ``NAME[:PATH]`` through the dataset registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from vlbench.data.base import default_cache_dir
from vlbench.registry import DATASETS

__all__ = ["split_dataset_arg", "load_dataset"]


def split_dataset_arg(value: str) -> tuple[str, Optional[str]]:
    """``NAME[:PATH]`` -> (name, path)."""
    name, sep, path = value.partition(":")
    return name, (path if sep and path else None)


def load_dataset(dataset_arg: str, options: dict[str, Any], cache_dir: Optional[Path], quiet: bool):
    """Build (or load from cache) the dataset named by ``NAME[:PATH]`` with the task's data options."""
    name, path = split_dataset_arg(dataset_arg)
    builder = DATASETS.get(name)
    return builder(path, options, Path(cache_dir) if cache_dir else default_cache_dir(), quiet=quiet)
