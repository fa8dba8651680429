"""Run records: one JSON file per (task, dataset, baseline, seed), complete enough to recompute any statistic."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from vlbench.errors import VLBenchError
from vlbench.failures import describe_failure
from vlbench.io import UnreadableFileError, atomic_write_json, read_json, read_regular_bytes

if TYPE_CHECKING:
    from vlbench.specs import RunConfig

__all__ = [
    "RECORD_SCHEMA",
    "safe_name",
    "record_path",
    "predictions_path",
    "archived_record_path",
    "record_header",
    "failed_record",
    "previous_record",
    "set_aside_record",
    "write_failed_record",
    "package_versions",
    "git_commit",
    "now_iso",
    "load_records",
    "RecordSet",
    "read_records",
    "record_files",
    "ensure_writable",
]

RECORD_SCHEMA = 4  # 3: the emap block; 4: the robustness block
# a record with per-example scores of a 200k-question test set is ~10 MB; anything near this is not a record
MAX_RECORD_BYTES = 256 << 20


def safe_name(name: str) -> str:
    """``name`` as one safe path component (ASCII letters, digits and ``-_.+``; never hidden, never empty)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.+") else "_" for c in str(name))
    # '', '.', '..' and hidden names must never become path components
    return cleaned if cleaned and not cleaned.startswith(".") else "_" + cleaned


def record_path(results_dir: Path, task: str, dataset: str, baseline: str, seed: int) -> Path:
    """Where the record of one run lives (always inside ``results_dir``, whatever the names)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise VLBenchError(f"seed {seed!r} is not an integer.")
    return Path(results_dir) / safe_name(task) / safe_name(dataset) / safe_name(baseline) / f"seed-{seed}.json"


def predictions_path(record: Path, suffix: str = ".json") -> Path:
    """The predictions file written next to a record."""
    return record.with_name(record.stem + ".predictions" + suffix)


def archived_record_path(path: Path, digest: str) -> Path:
    """Where the finished record of another config of the same run is kept: ``seed-N.cfg-<hash>.json``."""
    return path.with_name(f"{path.stem}.cfg-{digest}{path.suffix}")


def record_header(config: "RunConfig", seed: int, digest: str, status: str) -> dict[str, Any]:
    """The fields every run record starts with: schema, status, what ran (task, dataset, baseline, seed), its config."""
    return {
        "schema": RECORD_SCHEMA,
        "status": status,
        "task": config.task.name,
        "dataset": config.dataset.partition(":")[0],
        "baseline": config.baseline.name,
        "seed": seed,
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "primary_metric": config.task.primary_metric,
    }


def failed_record(config: "RunConfig", seed: int, digest: str, device: str, exc: BaseException) -> dict[str, Any]:
    """A record for a run that did not finish: its header plus what went wrong (no test block); ``device`` described."""
    return {
        **record_header(config, seed, digest, "failed"),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device,
        "created": now_iso(),
        "failure": describe_failure(exc),
    }


def previous_record(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(config hash, status) of the record already at ``path``; (None, None) when absent or unreadable."""
    try:
        record = read_json(path)
    except (OSError, ValueError, RecursionError):
        return None, None
    if not isinstance(record, dict):
        return None, None
    digest = record.get("config_hash")
    return (digest if isinstance(digest, str) else None), (record.get("status") or "ok")


def set_aside_record(path: Path, digest: str, echo: Callable[[str], None]) -> None:
    """Before a run of config ``digest`` starts over at ``path``: keep a finished record of another config.

    Records of one (task, dataset, baseline, seed) share a path, so a run with a new config would
    otherwise replace the finished result of the old one; it moves, with its predictions and weights,
    to :func:`archived_record_path` (tables read it as a row of its own config).
    """
    previous, status = previous_record(path)
    if previous is None or previous == digest or status != "ok":
        return
    target = archived_record_path(path, previous)
    prefix = path.stem + "."
    record = read_json(path)
    for companion in sorted(path.parent.glob(prefix + "*")):
        rest = companion.name[len(prefix):]
        if companion == path or not rest.startswith(("predictions", "weights")):
            continue
        renamed = companion.with_name(f"{target.stem}.{rest}")
        companion.replace(renamed)
        for key in ("predictions_file", "weights_file"):
            if record.get(key) == companion.name:
                record[key] = renamed.name
    atomic_write_json(target, record)
    path.unlink()
    echo(f"kept the finished record of the earlier config as {target}")


def write_failed_record(path: Path, make_record: Callable[[], dict[str, Any]], what: str) -> str:
    """Write the failed record ``make_record`` builds, never over a finished one; returns ``what`` plus where it went."""
    if previous_record(path)[1] == "ok":  # a finished result from an earlier config or run is worth more
        return f"{what}; the finished record at {path} is kept"
    try:
        atomic_write_json(path, make_record())
    except (OSError, ValueError, VLBenchError) as write_error:
        return f"{what}; the failed record could not be written to {path}: {write_error}"
    return f"{what} -> {path}"


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


def record_files(results_dir: Path) -> list[Path]:
    """Every run-record file under a folder (``seed-*.json``, predictions files excluded), sorted."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VLBenchError(f"results dir {str(results_dir)!r} does not exist.")
    return [p for p in sorted(results_dir.rglob("seed-*.json")) if ".predictions" not in p.name]


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        end = " (the file ends early: truncated?)" if exc.pos >= len(exc.doc) - 1 else ""
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{end}"
    return f"not valid JSON: {exc}"


def _refuse_non_finite(name: str) -> float:
    # vlbench writes records with allow_nan=False; NaN or Infinity in one was put there by hand and would
    # otherwise flow into means, intervals and p-values
    raise ValueError(f"{name} is not a JSON number (records hold finite numbers or null)")


def read_record(path: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(record, None) for a valid record file, else (None, one line saying what is wrong with it)."""
    from vlbench.results.validate import record_problem

    try:
        raw = read_regular_bytes(path, what="run record", limit=MAX_RECORD_BYTES).decode("utf-8")
        record = json.loads(raw, parse_constant=_refuse_non_finite)
    except UnreadableFileError as exc:  # a FIFO or a link to /dev/zero is refused, not read forever
        return None, exc.reason
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:
        return None, _json_error(exc)
    problem = record_problem(record)
    if problem:
        return None, problem
    record.setdefault("status", "ok")
    return record, None


@dataclass
class RecordSet:
    """Records read from one or more folders, with every file that was not a valid record and every duplicate."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)
    duplicates: list[str] = field(default_factory=list)  # one line per (config_hash, seed) found twice


def _same_result(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("status") == b.get("status") and a.get("test") == b.get("test") and \
        a.get("per_example") == b.get("per_example")


def read_records(results_dirs: list[Path] | Path) -> RecordSet:
    """Read, validate and merge the records of several folders; duplicates (config hash, seed) count once."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    out = RecordSet()
    seen: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
    for folder in dirs:
        for path in record_files(Path(folder)):
            record, problem = read_record(path)
            if record is None:
                out.problems.append((str(path), problem or "invalid"))
                continue
            record["_path"] = str(path)
            key = (record["task"], record["dataset"], record["baseline"], record["config_hash"], record["seed"])
            first = seen.get(key)
            if first is None:
                seen[key] = record
                continue
            # the same run found twice (e.g. two machines' folders): keep one, never count it twice
            if _same_result(first, record):
                out.duplicates.append(f"{record['_path']} repeats {first['_path']} (same config and seed, same results)")
                continue
            keep, drop = (first, record)
            if (record.get("status") == "ok", record.get("created", "")) > (first.get("status") == "ok",
                                                                             first.get("created", "")):
                keep, drop = record, first
            seen[key] = keep
            out.duplicates.append(f"{drop['_path']} and {keep['_path']} are the same config and seed with different "
                                  f"results; kept {keep['_path']} (finished and newer)")
    out.records = list(seen.values())
    return out


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every valid run record under a folder (see :func:`read_records` for the files that are not)."""
    return read_records([Path(results_dir)]).records
