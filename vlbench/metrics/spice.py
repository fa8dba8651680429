"""Optional SPICE 1.0 (pycocoevalcap's jar), run only where its Stanford CoreNLP 3.6.0 jars are available.

pycocoevalcap's ``Spice`` downloads CoreNLP into its own package folder on first use and writes its temp
and cache files there, which fails offline and on a read-only site-packages. Here the jars come from a
folder the user names (``--spice-dir``, or ``$VLBENCH_SPICE_DIR``, or pycocoevalcap's ``spice/lib`` if a
previous download put them there); the jar, the scorer class and its ``-subset -silent`` options are the
official ones, and the score is the mean of the per-image ``All`` F-scores, as in pycocoevalcap.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vlbench.errors import VLBenchError
from vlbench.metrics._java import pycocoevalcap_dir, require_java

__all__ = ["CORENLP_JARS", "find_corenlp_dir", "spice_score"]

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
ENV_VAR = "VLBENCH_SPICE_DIR"


def _has_jars(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CORENLP_JARS)


def find_corenlp_dir(spice_dir: Optional[Union[str, Path]] = None) -> tuple[Optional[Path], str]:
    """``(folder with the CoreNLP jars, "")`` or ``(None, why SPICE is skipped)``; a named folder must hold them."""
    if spice_dir is not None:
        folder = Path(spice_dir).expanduser()
        if not _has_jars(folder):
            raise VLBenchError(
                f"--spice-dir {str(folder)!r} must contain {' and '.join(CORENLP_JARS)} (Stanford CoreNLP 3.6.0)."
            )
        return folder, ""
    for candidate in (os.environ.get(ENV_VAR), pycocoevalcap_dir() / "spice" / "lib"):
        if candidate and _has_jars(Path(candidate)):
            return Path(candidate), ""
    return None, (
        f"Stanford CoreNLP 3.6.0 jars ({', '.join(CORENLP_JARS)}) not found; SPICE needs them "
        f"(pass --spice-dir DIR or set {ENV_VAR})"
    )


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # SPICE writes null for undefined F-scores; pycocoevalcap makes them NaN
        return math.nan


def spice_score(
    hypotheses: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    corenlp_dir: Path,
    *,
    memory: str = "8G",
) -> tuple[float, dict[Hashable, float]]:
    """Mean SPICE F-score and per-image F-scores for tokenized captions (image ids sorted, as pycocoevalcap does)."""
    spice_dir = pycocoevalcap_dir() / "spice"
    ids = sorted(hypotheses)
    records = [{"image_id": i, "test": hypotheses[i], "refs": list(references[i])} for i in ids]
    classpath = os.pathsep.join([str(spice_dir / "spice-1.0.jar"), str(spice_dir / "lib" / "*"), str(corenlp_dir / "*")])
    with tempfile.TemporaryDirectory(prefix="vlbench-spice-") as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_file.write_text(json.dumps(records, indent=2))
        cmd = [require_java(), f"-Xmx{memory}", "-cp", classpath, "edu.anu.spice.SpiceScorer", str(in_file),
               "-out", str(out_file), "-subset", "-silent"]
        proc = subprocess.run(cmd, cwd=str(spice_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0 or not out_file.is_file():
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise VLBenchError(f"SPICE (Java) failed with exit code {proc.returncode}: {tail[0]}")
        results = json.loads(out_file.read_text())
    per_image = {item["image_id"]: _as_float(item["scores"]["All"]["f"]) for item in results}
    values = [_as_float(item["scores"]["All"]["f"]) for item in results]
    # np.mean (pairwise summation) as in pycocoevalcap, so the last digits agree too
    return float(np.mean(np.array(values))), {i: per_image[i] for i in ids}
