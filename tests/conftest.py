"""Shared fixtures: a private dataset cache and tiny-data CLI arguments, so tests stay offline and fast."""

from __future__ import annotations

import pytest

from tests.system_packages import JAVA_APT, java_path, require_system

TINY_DATA = [
    "--set", "task.data.train_images=48",
    "--set", "task.data.val_images=12",
    "--set", "task.data.test_images=12",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One dataset cache for the whole session (tiny datasets are built once)."""
    return tmp_path_factory.mktemp("vlbench-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir, monkeypatch):
    monkeypatch.setenv("VLBENCH_CACHE", str(cache_dir))


@pytest.fixture
def java() -> None:
    """Java on the PATH (pycocoevalcap's PTB tokenizer and METEOR): skipped without it, required under CI."""
    require_system(java_path() is not None, "Java", JAVA_APT)
