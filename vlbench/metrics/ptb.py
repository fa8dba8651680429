"""pycocoevalcap's PTB tokenization (Stanford CoreNLP 3.4.1), without writing into site-packages.

Same jar, same arguments (``-preserveLines -lowerCase``), same punctuation removal as
``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer``; two differences, both fixes that leave well-formed
captions untouched:

* the temporary input file goes to the system temp folder, so a read-only site-packages works;
* every character the Java lexer treats as a line end (not only ``\\n``) becomes a space, and the number of
  output lines is checked, so a ``\\r`` or ``\\u2028`` in one caption cannot shift all later captions.

Example (needs Java):
    >>> ptb_tokenize({1: ["A man, riding a Horse."]})  # doctest: +SKIP
    {1: ['a man riding a horse']}
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Hashable, Mapping, Sequence

from vlbench.errors import VLBenchError
from vlbench.metrics._java import LINE_BREAKS, pycocoevalcap_dir, require_java

__all__ = ["ptb_tokenize", "tokenize_lines", "PUNCTUATIONS"]

# pycocoevalcap's list (tokenizer/ptbtokenizer.py): tokens dropped after tokenization.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])


def tokenize_lines(captions: Sequence[str]) -> list[str]:
    """Tokenize a list of captions with one Java call; the result has one string per caption."""
    lines = [LINE_BREAKS.sub(" ", c) for c in captions]
    if not lines:
        return []
    jar = pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    cmd = [require_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    fd, path = tempfile.mkstemp(prefix="vlbench-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write("\n".join(lines).encode())
        proc = subprocess.run(cmd + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    finally:
        os.remove(path)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise VLBenchError(f"the PTB tokenizer (Java) failed with exit code {proc.returncode}: {tail[0]}")
    tokenized = proc.stdout.decode().split("\n")
    if len(tokenized) != len(lines):
        raise VLBenchError(
            f"the PTB tokenizer returned {len(tokenized)} lines for {len(lines)} captions; refusing to misalign them."
        )
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in tokenized]


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """Tokenize ``{key: [caption, ...]}`` as pycocoevalcap's ``PTBTokenizer.tokenize`` does, in one Java call."""
    flat = tokenize_lines([c for caps in captions.values() for c in caps])
    out: dict[Hashable, list[str]] = {}
    start = 0
    for key, caps in captions.items():
        out[key] = flat[start : start + len(caps)]
        start += len(caps)
    return out
