"""Run records: one JSON file per (task, dataset, baseline, seed), complete enough to recompute any statistic."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from vlbench.errors import VLBenchError

__all__ = [
    "RECORD_SCHEMA",
    "record_path",
    "predictions_path",
    "existing_config_hash",
    "package_versions",
    "git_commit",
    "now_iso",
    "load_records",
    "ensure_writable",
]

RECORD_SCHEMA = 1


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.+") else "_" for c in str(name))
    # '', '.', '..' and hidden names must never become path components
    return cleaned if cleaned and not cleaned.startswith(".") else "_" + cleaned


def record_path(results_dir: Path, task: str, dataset: str, baseline: str, seed: int) -> Path:
    """Where the record of one run lives (always inside ``results_dir``, whatever the names)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise VLBenchError(f"seed {seed!r} is not an integer.")
    return Path(results_dir) / _safe(task) / _safe(dataset) / _safe(baseline) / f"seed-{seed}.json"


def predictions_path(record: Path, suffix: str = ".json") -> Path:
    """The predictions file written next to a record."""
    return record.with_name(record.stem + ".predictions" + suffix)


def existing_config_hash(path: Path) -> Optional[str]:
    """The config hash of an existing, readable record, or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("config_hash")
    except (OSError, ValueError, AttributeError):
        return None


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a run's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    import vlbench

    versions = {"vlbench": vlbench.__version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "numpy", "pycocoevalcap", "sacrebleu"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_commit() -> Optional[str]:
    """The git commit of the vlbench source tree (with ``-dirty`` when modified), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def now_iso() -> str:
    """UTC timestamp for records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ensure_writable(results_dir: Path) -> Path:
    """Create the results dir, or fail with one clear line when it cannot be written."""
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise VLBenchError(
            f"results dir {str(results_dir)!r} cannot be written ({exc.strerror or exc}); pass --results-dir DIR."
        ) from None
    return results_dir


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every run record under a folder (predictions files and unreadable files are skipped)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VLBenchError(f"results dir {str(results_dir)!r} does not exist.")
    records = []
    for path in sorted(results_dir.rglob("seed-*.json")):
        if ".predictions" in path.name:
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA:
            record["_path"] = str(path)
            records.append(record)
    return records
