"""Locating Java and the jars that pycocoevalcap ships (the PTB tokenizer, METEOR 1.5, SPICE 1.0)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

from vlbench.errors import VLBenchError

__all__ = ["require_java", "pycocoevalcap_dir", "LINE_BREAKS"]

# Characters that Stanford's PTBLexer (CoreNLP 3.4.1) treats as line ends under -preserveLines, found by
# feeding it every control/space code point: \r\n, \r, \n, VT, FF, U+2028, U+2029. pycocoevalcap only
# replaces "\n", so any of the others splits a caption in two and shifts every later caption.
LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\u2028\u2029]")

_JAVA_HELP = (
    "Java was not found on PATH: the PTB tokenizer and METEOR used for captioning metrics (pycocoevalcap) "
    "need a Java runtime (8 or newer); install one, e.g. `apt-get install -y default-jre-headless`, or set JAVA_HOME."
)


def require_java() -> str:
    """Path of the ``java`` executable (PATH first, then $JAVA_HOME/bin); raises a one-line error if absent."""
    found = shutil.which("java")
    if found:
        return found
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    raise VLBenchError(_JAVA_HELP)


def pycocoevalcap_dir() -> Path:
    """Folder of the installed pycocoevalcap package (read only: nothing is ever written there)."""
    spec = importlib.util.find_spec("pycocoevalcap")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise VLBenchError("pycocoevalcap is not installed; captioning metrics need it (`pip install pycocoevalcap`).")
    return Path(locations[0])
