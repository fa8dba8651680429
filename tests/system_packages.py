"""Tests that need a system package (Java, Chromium): skipped with the reason where it is missing, required under CI.

The README's test command must pass on a fresh machine with only Python; `.ci/run` installs every
system package and sets ``CI=true``, where a missing one is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import pytest

__all__ = ["in_ci", "skip_or_fail", "require_system", "java_path", "chromium_paths", "JAVA_APT", "CHROMIUM_APT"]

JAVA_APT = "apt-get install default-jre-headless"
CHROMIUM_APT = "apt-get install chromium chromium-driver"


def in_ci() -> bool:
    """Whether this run is CI (``CI`` set to true/1/yes, as .ci/run and CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the calling test with ``reason``, or fail it under CI, where .ci/run installs everything tests need."""
    if in_ci():
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


def require_system(found: bool, what: str, install: str) -> None:
    """Skip the calling test when ``what`` is missing, or fail it under CI, where it must be installed."""
    if not found:
        skip_or_fail(f"{what} is not installed ({install}; .ci/run installs it)")


def java_path() -> Optional[str]:
    """The java executable on the PATH, or None."""
    return shutil.which("java")


def chromium_paths() -> Optional[tuple[str, str]]:
    """(chromium, chromedriver) when both exist, or None."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return (chromium, driver) if Path(chromium).exists() and Path(driver).exists() else None
