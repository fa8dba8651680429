"""Captioning metrics against pycocoevalcap's COCOEvalCap (see tests/data/metrics/README.md).

One METEOR JVM serves the whole session (``shared_caption_scorer``), so only the first test here pays
for its start.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.system_packages import JAVA_APT, java_path, require_system
from vlbench.errors import DataError, VLBenchError
from vlbench.metrics import _java, ptb
from vlbench.metrics.captioning import CaptionScorer, caption_evaluate, shared_caption_scorer
from vlbench.metrics.formats import read_coco_references, read_coco_results
from vlbench.metrics.meteor import shared_meteor
from vlbench.metrics.ptb import PUNCTUATIONS, tokenize_lines
from vlbench.registry import METRICS

DATA = json.loads((Path(__file__).parent / "data" / "metrics" / "caption_official.json").read_text(encoding="utf-8"))
SUITES = {s["name"]: s for s in DATA["suites"]}
needs_java = pytest.mark.usefixtures("java")  # skipped without Java, required under CI (tests/system_packages.py)


def _load(suite: dict, tmp_path: Path) -> tuple[dict, dict]:
    (tmp_path / "r.json").write_text(json.dumps(suite["references"]), encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps(suite["predictions"]), encoding="utf-8")
    return read_coco_results(tmp_path / "p.json"), read_coco_references(tmp_path / "r.json")


@pytest.fixture(scope="module")
def scorer() -> CaptionScorer:
    require_system(java_path() is not None, "Java", JAVA_APT)
    return shared_caption_scorer()


@needs_java
@pytest.mark.parametrize("name", list(SUITES))
def test_matches_cocoevalcap(name: str, scorer: CaptionScorer, tmp_path: Path) -> None:
    suite = SUITES[name]
    preds, refs = _load(suite, tmp_path)
    got = scorer.score(preds, refs)
    assert {k: got[k] for k in suite["expected"]} == suite["expected"]  # bit for bit
    for metric, values in suite["expected_per_image"].items():
        assert list(got["per_example"][metric].items()) == [tuple(v) for v in values], metric
    assert "SPICE" not in got and "CoreNLP" in got["skipped"]["SPICE"]


def test_line_breaks_case_really_breaks_pycocoevalcap() -> None:
    # the stored raw run shows the silent shift that the sanitized (expected) run avoids
    suite = SUITES["line_breaks"]
    assert suite["official_raw"]["CIDEr"] < suite["expected"]["CIDEr"] - 1


@needs_java
def test_tokenizer_keeps_one_line_per_caption() -> None:
    caps = ["A dog\rrunning.", "two\u2028cats", "x\x0by\x0cz", "a\r\nb", "", "(Paren) \"quote\" - dash", "last\u2029one"]
    # "-lrb-" survives: pycocoevalcap drops "-LRB-" but -lowerCase has already lowercased it (kept on purpose)
    assert tokenize_lines(caps) == ["a dog running", "two cats", "x y z", "a b", "", "-lrb- paren -rrb- quote dash", "last one"]


@needs_java
def test_nothing_is_written_into_pycocoevalcap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = _java.pycocoevalcap_dir()
    before = sorted(p.name for p in package.rglob("*"))
    made: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003
        fd, path = real_mkstemp(*args, **kwargs)
        made.append(path)
        return fd, path

    monkeypatch.setattr(ptb.tempfile, "mkstemp", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert tokenize_lines(["A man."]) == ["a man"]
    assert made and all(Path(p).parent == tmp_path for p in made)
    assert sorted(p.name for p in package.rglob("*")) == before


def test_punctuation_list_is_pycocoevalcaps() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS as official

    assert PUNCTUATIONS == frozenset(official)


@needs_java
def test_meteor_line_breaks_do_not_hang_and_process_is_reused(scorer: CaptionScorer) -> None:
    meteor = shared_meteor()
    pid = meteor._proc.pid  # type: ignore[union-attr]
    broken = meteor.score(["a dog\nrunning ||| fast", "cat"], [["a dog runs\r\nfast", "dog"], ["a cat\n"]])
    clean = meteor.score(["a dog running fast", "cat"], [["a dog runs fast", "dog"], ["a cat "]])
    assert broken == clean and len(broken[1]) == 2
    assert meteor._proc.pid == pid  # type: ignore[union-attr]


@needs_java
def test_functional_form_and_registry_share_the_scorer(scorer: CaptionScorer) -> None:
    preds = {5: "a clock tower"}
    refs = {5: ["A clock tower.", "a tall clock tower"]}
    assert METRICS.get("coco_caption") is caption_evaluate
    assert caption_evaluate(preds, refs) == scorer.score(preds, refs)


@pytest.mark.parametrize(
    ("preds", "refs", "message"),
    [
        ({1: 3}, {1: ["a"]}, "must be a string"),
        ({1: "a"}, {1: []}, "non-empty list"),
        ({1: "a"}, {1: "a cat"}, "non-empty list"),
        ({1: "a", 2: "b"}, {1: ["a"], 3: ["c"]}, "1 of 2 reference image_ids have no prediction (first: 3)"),
    ],
)
def test_bad_inputs_fail_before_java(preds: dict, refs: dict, message: str) -> None:
    scorer = CaptionScorer(meteor=False)
    with pytest.raises(DataError) as info:
        scorer.score(preds, refs)
    assert message in str(info.value)


def test_no_java_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_java.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(VLBenchError, match="Java was not found on PATH: the PTB tokenizer and METEOR"):
        CaptionScorer()


def test_spice_dir_without_jars_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VLBenchError, match="stanford-corenlp-3.6.0.jar"):
        CaptionScorer(meteor=False, spice_dir=tmp_path)


def test_spice_skipped_reason_without_jars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLBENCH_SPICE_DIR", raising=False)
    scorer = CaptionScorer(meteor=False)
    assert scorer.spice_available is (os.path.isfile(_java.pycocoevalcap_dir() / "spice" / "lib" / "stanford-corenlp-3.6.0.jar"))


@needs_java
def test_second_epoch_tokenizes_only_new_captions(scorer: CaptionScorer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from vlbench.metrics import captioning

    suite = SUITES["random"]
    preds, refs = _load(suite, tmp_path)
    scorer.score(preds, refs)  # first epoch (may already be cached by the test above)
    seen: list[list[str]] = []
    real = captioning.tokenize_lines
    monkeypatch.setattr(captioning, "tokenize_lines", lambda caps: seen.append(list(caps)) or real(caps))
    new_preds = {i: f"{c} again" for i, c in preds.items()}
    got = scorer.score(new_preds, refs)
    assert len(seen) == 1 and set(seen[0]) == set(new_preds.values())
    uncached = CaptionScorer(meteor=scorer._meteor).score(new_preds, refs)  # type: ignore[arg-type]
    assert got == uncached
