"""Translation metrics against the sacrebleu command line (see tests/data/metrics/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlbench.errors import DataError
from vlbench.metrics.formats import read_lines
from vlbench.metrics.translation import translation_evaluate
from vlbench.registry import METRICS

DATA = json.loads((Path(__file__).parent / "data" / "metrics" / "translation_sacrebleu.json").read_text(encoding="utf-8"))


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    for name, text in DATA["files"].items():
        (tmp_path / name).write_bytes(text.encode("utf-8"))  # exact bytes: CRLF, no final newline, ...
    return tmp_path


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{len(c['references'])}refs")
def test_matches_sacrebleu_cli(case: dict, files: Path) -> None:
    hyps = read_lines(files / "hyp.txt", "predictions")
    refs = [read_lines(files / r, "references") for r in case["references"]]
    got = translation_evaluate(hyps, refs)
    exp = case["expected"]
    assert got["BLEU"] == exp["BLEU"] and got["chrF"] == exp["chrF"]
    assert got["signatures"]["BLEU"] == exp["signatures"]["BLEU"]
    assert got["signatures"]["chrF"] == exp["signatures"]["chrF"]
    assert got["signatures"]["sentence_BLEU"] == exp["sentence_BLEU_signature"]
    assert list(got["per_example"]["BLEU"].values()) == exp["sentence_BLEU"]
    assert list(got["per_example"]["chrF"].values()) == exp["sentence_chrF"]


def test_lines_are_read_like_sacrebleu(files: Path) -> None:
    ref1 = read_lines(files / "ref1.txt", "references")
    ref2 = read_lines(files / "ref2.txt", "references")
    hyp = read_lines(files / "hyp.txt", "predictions")
    assert len(ref1) == len(ref2) == len(hyp) == 10
    assert ref1[3] == "Eine Frau liest ein Buch." and hyp[2] == "zwei Hunde spielen im Schnee" and hyp[4] == ""


def test_stream_length_mismatch() -> None:
    with pytest.raises(DataError, match="reference stream #2 has 1 lines but there are 2 hypotheses"):
        translation_evaluate(["a", "b"], [["a", "b"], ["a"]])
    assert METRICS.get("sacrebleu") is translation_evaluate


@pytest.mark.usefixtures("java")  # skipped without Java, required under CI (tests/system_packages.py)
def test_optional_meteor_uses_the_shared_process() -> None:
    from vlbench.metrics.meteor import shared_meteor

    got = translation_evaluate(["a man rides a horse", "two dogs"], [["a man riding a horse", "dogs"]], meteor=True)
    corpus, each = shared_meteor().score(["a man rides a horse", "two dogs"], [["a man riding a horse"], ["dogs"]])
    assert got["METEOR"] == corpus and list(got["per_example"]["METEOR"].values()) == each
