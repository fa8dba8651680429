"""``vlbench score`` end to end through ``main([...])``: official formats in, official numbers out, bad input -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlbench.cli.main import main
from vlbench.metrics import _java
from vlbench.metrics.vqa import vqa_evaluate

DATA = Path(__file__).parent / "data" / "metrics"
VQA = {s["name"]: s for s in json.loads((DATA / "vqa_official.json").read_text(encoding="utf-8"))["suites"]}
CAPTION = {s["name"]: s for s in json.loads((DATA / "caption_official.json").read_text(encoding="utf-8"))["suites"]}
RETRIEVAL = {c["name"]: c for c in json.loads((DATA / "retrieval_vsepp.json").read_text())["cases"]}
VMT = json.loads((DATA / "translation_sacrebleu.json").read_text(encoding="utf-8"))
needs_java = pytest.mark.usefixtures("java")  # skipped without Java, required under CI (tests/system_packages.py)


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def vqa_files(tmp_path: Path) -> tuple[Path, Path]:
    suite = VQA["quirks"]
    return (_write(tmp_path / "pred.json", suite["predictions"]),
            _write(tmp_path / "ann.json", {"annotations": suite["annotations"]}))


def test_vqa_json(vqa_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--task", "vqa", "-p", str(vqa_files[0]), "-r", str(vqa_files[1]), "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    expected = VQA["quirks"]["expected"]
    assert result == {k: expected[k] for k in ("overall", "perAnswerType", "perQuestionType")}


def test_vqa_rich_table_and_output_file(vqa_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "score.json"
    code, out, _ = _run(capsys, "--task", "vqa", "-p", str(vqa_files[0]), "-r", str(vqa_files[1]), "-o", str(target),
                        "--per-example")
    assert code == 0
    assert "overall" in out and f"{VQA['quirks']['expected']['overall']:.2f}" in out
    saved = json.loads(target.read_text())
    assert saved["overall"] == VQA["quirks"]["expected"]["overall"] and len(saved["per_example"]) == len(VQA["quirks"]["annotations"])


def test_vqa_missing_and_unknown_ids(tmp_path: Path, vqa_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    preds = json.loads(vqa_files[0].read_text())
    preds = sorted(preds, key=lambda p: p["question_id"])[3:] + [{"question_id": 99, "answer": "yes"}]
    bad = _write(tmp_path / "bad.json", preds)
    code, out, err = _run(capsys, "--task", "vqa", "-p", str(bad), "-r", str(vqa_files[1]), "-f", "json")
    assert code == 2 and out == ""
    assert err.startswith("error: predictions do not match the references: 3 of 34 reference question_ids have no "
                          "prediction (first: 1007, 1014, 1021); 1 predicted question_ids are not in the references "
                          "(first: 99).")
    assert "--allow-partial" in err and len(err.strip().splitlines()) == 1

    code, out, err = _run(capsys, "--task", "vqa", "-p", str(bad), "-r", str(vqa_files[1]), "-f", "json", "--allow-partial")
    assert code == 0 and err.startswith("warning: scoring only the 31 shared question_ids")
    anns = [a for a in VQA["quirks"]["annotations"] if a["question_id"] not in (1007, 1014, 1021)]
    result = json.loads(out)
    assert result["overall"] == vqa_evaluate(preds[:-1], anns)["overall"]
    assert result["partial"] == {"scored": 31, "missing_predictions": 3, "unknown_predictions": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ('{"question_id": 1, "answer": "a"}', "must be a JSON list"),
        ('[{"question_id": 1}]', "entry #0 must be an object with question_id, answer"),
        ("[]", "is an empty list"),
    ],
)
def test_vqa_malformed_predictions(content: str, message: str, tmp_path: Path, vqa_files: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.json").write_text(content)
    code, out, err = _run(capsys, "--task", "vqa", "-p", str(tmp_path / "p.json"), "-r", str(vqa_files[1]))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_task_and_format(vqa_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--task", "caption", "-p", str(vqa_files[0]), "-r", str(vqa_files[1]))
    assert code == 2 and "Did you mean 'captioning'?" in err
    code, _, err = _run(capsys, "--task", "vqa", "-p", str(vqa_files[0]), "-r", str(vqa_files[1]), "-f", "xml")
    assert code == 2 and "--format 'xml'" in err
    code, _, err = _run(capsys, "--task", "vqa", "-p", str(vqa_files[0]), "-r", str(vqa_files[1]), "-r", str(vqa_files[1]))
    assert code == 2 and "exactly one --references" in err


@needs_java
def test_captioning_json_and_partial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = CAPTION["adversarial"]
    pred = _write(tmp_path / "p.json", suite["predictions"])
    ref = _write(tmp_path / "r.json", suite["references"])
    code, out, err = _run(capsys, "--task", "captioning", "-p", str(pred), "-r", str(ref), "-f", "json")
    assert code == 0, err
    result = json.loads(out)
    assert {k: result[k] for k in suite["expected"]} == suite["expected"]
    assert "SPICE" not in result and "CoreNLP" in result["skipped"]["SPICE"] and "per_example" not in result

    short = _write(tmp_path / "short.json", suite["predictions"][:-2])
    code, out, err = _run(capsys, "--task", "captioning", "-p", str(short), "-r", str(ref), "-f", "json")
    assert code == 2 and "2 of 11 reference image_ids have no prediction" in err
    code, out, err = _run(capsys, "--task", "captioning", "-p", str(short), "-r", str(ref), "-f", "json", "--allow-partial")
    assert code == 0 and "warning: scoring only the 9 shared image_ids" in err
    assert json.loads(out)["partial"]["missing_predictions"] == 2


def test_captioning_bad_references_and_no_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pred = _write(tmp_path / "p.json", [{"image_id": 1, "caption": "a dog"}])
    orphan = _write(tmp_path / "r1.json", {"images": [{"id": 1}], "annotations": [{"image_id": 2, "id": 1, "caption": "x"}]})
    code, _, err = _run(capsys, "--task", "captioning", "-p", str(pred), "-r", str(orphan))
    assert code == 2 and "refers to image_id 2, which is not in 'images'" in err
    dup = _write(tmp_path / "p2.json", [{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}])
    ref = _write(tmp_path / "r.json", {"images": [{"id": 1}], "annotations": [{"image_id": 1, "id": 1, "caption": "a dog"}]})
    code, _, err = _run(capsys, "--task", "captioning", "-p", str(dup), "-r", str(ref))
    assert code == 2 and "more than one caption for image_id 1" in err

    from vlbench.metrics import captioning

    monkeypatch.setattr(captioning, "_shared", {})  # force a fresh scorer, which must look for Java
    monkeypatch.setattr(_java.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr("vlbench.metrics.meteor._shared", [])
    code, out, err = _run(capsys, "--task", "captioning", "-p", str(pred), "-r", str(ref))
    assert code == 2 and "Java was not found on PATH" in err and "default-jre-headless" in err and out == ""


def test_retrieval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = RETRIEVAL["hard_50"]
    np.save(tmp_path / "sim.npy", np.array(case["similarity"], dtype=case["dtype"]))
    ref = _write(tmp_path / "t2i.json", {"text_to_image": case["text_to_image"]})
    code, out, err = _run(capsys, "--task", "retrieval", "-p", str(tmp_path / "sim.npy"), "-r", str(ref), "-f", "json")
    assert code == 0, err
    result = json.loads(out)
    keys = ("R@1", "R@5", "R@10", "medr", "meanr")
    assert [result[f"i2t_{k}"] for k in keys] == case["expected"]["i2t"]
    assert [result[f"t2i_{k}"] for k in keys] == case["expected"]["t2i"] and result["rsum"] == case["expected"]["rsum"]

    np.save(tmp_path / "wrong.npy", np.zeros((50, 7)))
    code, _, err = _run(capsys, "--task", "retrieval", "-p", str(tmp_path / "wrong.npy"), "-r", str(ref))
    assert code == 2 and "7 text columns but text_to_image lists 250" in err
    np.save(tmp_path / "flat.npy", np.zeros(5))
    code, _, err = _run(capsys, "--task", "retrieval", "-p", str(tmp_path / "flat.npy"), "-r", str(ref))
    assert code == 2 and "2-D numeric array" in err
    (tmp_path / "empty.npy").write_bytes(b"")
    code, _, err = _run(capsys, "--task", "retrieval", "-p", str(tmp_path / "empty.npy"), "-r", str(ref))
    assert code == 2 and "is empty" in err
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    code, _, err = _run(capsys, "--task", "retrieval", "-p", str(tmp_path / "junk.npy"), "-r", str(ref))
    assert code == 2 and "is not a .npy array" in err


def test_vmt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in VMT["files"].items():
        (tmp_path / name).write_bytes(text.encode("utf-8"))
    case = VMT["cases"][1]
    args = ["--task", "vmt", "-p", str(tmp_path / "hyp.txt"), "-r", str(tmp_path / "ref1.txt"), "-r", str(tmp_path / "ref2.txt")]
    code, out, err = _run(capsys, *args, "-f", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["BLEU"] == case["expected"]["BLEU"] and result["chrF"] == case["expected"]["chrF"]
    assert result["signatures"]["BLEU"] == case["expected"]["signatures"]["BLEU"]

    (tmp_path / "short.txt").write_text("one line\n", encoding="utf-8")
    code, _, err = _run(capsys, "--task", "vmt", "-p", str(tmp_path / "hyp.txt"), "-r", str(tmp_path / "short.txt"))
    assert code == 2 and "has 1 lines but predictions file" in err and "has 10" in err
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    code, _, err = _run(capsys, "--task", "vmt", "-p", str(tmp_path / "empty.txt"), "-r", str(tmp_path / "ref1.txt"))
    assert code == 2 and "is empty" in err
