"""The bad-input catalogue, part 2: files that the dataset readers, `score` and `table` must refuse (issue 24).

Every case is exit code 2 and one `error:` line naming the file, the entry and the field; none is a
traceback, an "unexpected" error, a hang, or a value silently coerced (a float id truncated, a number
turned into a string). The fixtures are the official layouts of tests/dataset_fixtures.py, each copied
and broken in one place. Part 1 is tests/test_bad_input.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests import dataset_fixtures as fx
from tests.results_fixtures import make_record, write_record
from vlbench.cli.main import main


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> dict[str, Path]:
    """Every official layout once; each case copies one and breaks it."""
    base = tmp_path_factory.mktemp("layouts")
    return {"vqav2": fx.make_vqav2(base / "vqav2", truncated=None), "coco-karpathy": fx.make_coco_karpathy(base / "coco"),
            "flickr30k": fx.make_flickr30k(base / "f30k"), "multi30k": fx.make_multi30k(base / "m30k")}


@pytest.fixture(autouse=True)
def _no_hang():
    """A reader that blocks (on a FIFO, on /dev/zero) fails the test instead of hanging the suite."""
    def _alarm(*_):
        raise TimeoutError("the command was still reading after 60 s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "unexpected" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


def _broken(official, tmp_path, name: str, filename: str, mutate) -> Path:
    root = shutil.copytree(official[name], tmp_path / name)
    path = root / filename
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return root


def _build(capsys, tmp_path, dataset: str, *extra: str) -> str:
    code = main(["data", "build", dataset, "--cache-dir", str(tmp_path / "cache"), "--quiet", *extra])
    assert code == 2, capsys.readouterr()
    return _one_error(capsys)


def _set(key, value, index=0, inner=None):
    """A mutation: entry ``index`` of the file's list gets ``key = value`` (of its ``inner`` list's first item)."""
    def mutate(data):
        entry = data[next(k for k in ("annotations", "questions", "images") if k in data)][index]
        (entry[inner][0] if inner else entry)[key] = value
    return mutate


def _seq(*mutations):
    def mutate(data):
        for m in mutations:
            m(data)
    return mutate


QUESTIONS, ANNOTATIONS = "v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json"
ANN = {  # annotation-file cases: the dataset reader and `vlbench score` refuse them alike (one shared validator)
    "answers-as-string": (_set("answers", "red"), "annotation #0 (question_id 10): 'answers' must be a list"),
    "answers-empty-no-choice": (_seq(_set("answers", []), lambda d: d["annotations"][0].pop("multiple_choice_answer")),
                                "'answers' is empty and there is no multiple_choice_answer"),
    "annotations-as-dict": (lambda d: d.update(annotations={"10": {}}), "its 'annotations' is a JSON dict"),
    "question_id-float": (_set("question_id", 10.7), "annotation #0: 'question_id' must be an integer, got 10.7"),
    "duplicate-annotation": (lambda d: d["annotations"].append(d["annotations"][0]), "'question_id' repeats annotation #0"),
    "question_type-number": (_set("question_type", 5), "'question_type' must be a string (valid Unicode), got 5"),
    "answer-number": (_set("answer", 3, inner="answers"), "'answers' entry #0 must be an object"),
    "answer-surrogate": (_set("answer", "r\ud800d", inner="answers"), "(valid Unicode)"),
    "question_type-surrogate": (_set("question_type", "what \ud800"), "'question_type' must be a string (valid Unicode)"),
}
READER_ONLY = {  # what only a dataset reader reads: image ids, the questions file, the two files together
    "image_id-string": (ANNOTATIONS, _set("image_id", "abc"), "'image_id' must be an integer, got 'abc'"),
    "image_id-null": (ANNOTATIONS, _set("image_id", None), "'image_id' must be an integer, got None"),
    "question-null": (QUESTIONS, _set("question", None), "question #0 (question_id 10): 'question' must be a string"),
    "question-question_id-float": (QUESTIONS, _set("question_id", 10.7), "question #0: 'question_id' must be an integer"),
    "duplicate-question": (QUESTIONS, lambda d: d["questions"].append(d["questions"][0]), "'question_id' repeats question #0"),
    "no-questions-list": (QUESTIONS, lambda d: d.pop("questions"), "it has no 'questions'"),
    "question-missing": (QUESTIONS, lambda d: d["questions"].pop(0), "annotation #0 (question_id 10): 'question_id' has no question"),
    "image-differs-from-question": (ANNOTATIONS, _set("image_id", 2), "'image_id' differs from its question's image_id 1"),
}


@pytest.mark.parametrize("case", list(ANN))
def test_vqav2_reader_refuses_a_bad_annotations_file(official, tmp_path, capsys, case):
    mutate, message = ANN[case]
    root = _broken(official, tmp_path, "vqav2", ANNOTATIONS, mutate)
    err = _build(capsys, tmp_path, f"vqav2:{root}")
    assert message in err and str(root / ANNOTATIONS) in err


@pytest.mark.parametrize("case", list(ANN))
def test_score_refuses_the_same_annotations_file(official, tmp_path, capsys, case):
    mutate, message = ANN[case]
    root = _broken(official, tmp_path, "vqav2", ANNOTATIONS, mutate)
    qids = sorted({a["question_id"] for a in json.loads((official["vqav2"] / ANNOTATIONS).read_text())["annotations"]})
    (tmp_path / "pred.json").write_text(json.dumps([{"question_id": q, "answer": "red"} for q in qids]))
    assert main(["score", "--task", "vqa", "-p", str(tmp_path / "pred.json"), "-r", str(root / ANNOTATIONS)]) == 2
    assert message in _one_error(capsys)


@pytest.mark.parametrize("case", list(READER_ONLY))
def test_vqav2_reader_refuses_bad_questions_and_image_ids(official, tmp_path, capsys, case):
    filename, mutate, message = READER_ONLY[case]
    root = _broken(official, tmp_path, "vqav2", filename, mutate)
    err = _build(capsys, tmp_path, f"vqav2:{root}")
    assert message in err and filename in err


KARPATHY = {
    "cocoid-string": ("coco-karpathy", _set("cocoid", "abc"), "image #0: 'cocoid' must be an integer, got 'abc'"),
    "cocoid-float": ("coco-karpathy", _set("cocoid", 1.5), "'cocoid' must be an integer, got 1.5"),
    "cocoid-beyond-int64": ("coco-karpathy", _set("cocoid", 2**70), "outside the 64-bit integer range"),
    "split-null": ("coco-karpathy", _set("split", None), "'split' must be a string (valid Unicode), got None"),
    "sentences-string": ("coco-karpathy", _set("sentences", "a red picture"), "'sentences' must be a non-empty list"),
    "sentences-empty": ("coco-karpathy", _set("sentences", []), "'sentences' must be a non-empty list"),
    "raw-number": ("coco-karpathy", _set("raw", 3, inner="sentences"), "sentence #0: 'raw' must be a string (valid Unicode), got 3"),
    "sentid-float": ("coco-karpathy", _set("sentid", 0.5, inner="sentences"), "'sentid' must be an integer"),
    "duplicate-image": ("coco-karpathy", lambda d: d["images"].append({**d["images"][0], "sentences": []}),
                        "'cocoid' repeats image #0"),
    "duplicate-sentid": ("coco-karpathy", _set("sentid", 0, index=1, inner="sentences"), "'sentid' repeats a sentence of image #0"),
    "no-images": ("coco-karpathy", lambda d: d.pop("images"), "is not a Karpathy split file"),
    "filename-is-a-path": ("coco-karpathy", _set("filename", "../../etc/passwd"), "'filename' must be a plain file"),
    "flickr-name-without-id": ("flickr30k", _seq(_set("filename", "x.jpg"), lambda d: d["images"][0].pop("imgid")),
                               "'imgid' is missing and the file name 'x.jpg' is not a numeric id"),
    "flickr-duplicate-image": ("flickr30k", lambda d: d["images"].append(d["images"][0]), "'filename' repeats image #0"),
}


@pytest.mark.parametrize("case", list(KARPATHY))
def test_karpathy_readers_refuse_a_bad_split_file(official, tmp_path, capsys, case):
    name, mutate, message = KARPATHY[case]
    filename = "dataset_coco.json" if name == "coco-karpathy" else "dataset_flickr30k.json"
    root = _broken(official, tmp_path, name, filename, mutate)
    err = _build(capsys, tmp_path, f"{name}:{root}")
    assert message in err and filename in err


def _fifo_in_place(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


MULTI30K = {  # case -> (break the checkout's data/task1/raw folder, message)
    "not-utf8": (lambda raw: (raw / "val.de").write_bytes(b"Ein \xff Bild\n" * 4), "val.de' is not UTF-8 text"),
    "broken-gzip": (lambda raw: (raw / "train.en.gz").write_bytes(b"\x1f\x8b\x08garbage"), "not a readable gzip file"),
    "fifo": (lambda raw: _fifo_in_place(raw / "val.en"), "val.en' is not a regular file (it is a FIFO"),
    "unicode-digit-image-name": (lambda raw: (raw.parent / "image_splits" / "val.txt").write_text("²³.jpg\n" * 4),
                                 "image name '²³.jpg' is not a Flickr30k file name"),
}


@pytest.mark.parametrize("case", list(MULTI30K))
def test_multi30k_reader_refuses_bad_text_files(official, tmp_path, capsys, case):
    root = shutil.copytree(official["multi30k"], tmp_path / "m30k")
    mutate, message = MULTI30K[case]
    mutate(root / "data" / "task1" / "raw")
    assert message in _build(capsys, tmp_path, f"multi30k:{root}")


def test_multi30k_splits_lines_on_newlines_only(official, tmp_path, capsys):
    """A sentence holding U+2028 is one line, not two (str.splitlines would shift every later pair)."""
    root = shutil.copytree(official["multi30k"], tmp_path / "m30k")
    val = root / "data" / "task1" / "raw" / "val.en"
    lines = val.read_text(encoding="utf-8").split("\n")
    val.write_text("\n".join([lines[0].replace(" with ", " with\u2028"), *lines[1:]]), encoding="utf-8")
    assert main(["data", "build", f"multi30k:{root}", "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0, capsys.readouterr()


HF_COLUMNS = {"question": "q", "answers": "ans", "question_id": "qid", "image_id": "img"}
HF = {  # column -> (feature, two values), message
    "question_id-float": ("qid", "float64", [10.7, 2.0], "row #0: 'question_id' must be an integer, got 10.7"),
    "duplicate-question_id": ("qid", "int64", [1, 1], "row #1 (question_id 1): 'question_id' repeats row #0"),
    "question-null": ("q", "string", [None, "who?"], "'question' must be a string (valid Unicode), got None"),
    "answers-numbers": ("ans", "int64-list", [[3], [4]], "'answers' entry #0 must be an object"),
    "answers-empty": ("ans", "string-list", [[], ["x"]], "'answers' is empty and there is no multiple_choice_answer"),
    "image_id-string": ("img", "string", ["abc", "2"], "row #0: 'image_id' must be an integer, got 'abc'"),
}


@pytest.mark.parametrize("case", list(HF))
def test_hf_reader_refuses_rows_instead_of_coercing_them(tmp_path, capsys, case):
    from datasets import Dataset, DatasetDict, Features, List, Value

    column, kind, values, message = HF[case]
    rows = {"q": ["what?", "who?"], "ans": [["red"], ["blue"]], "qid": [1, 2], "img": [1, 2], column: values}
    types = {"q": Value("string"), "ans": List(Value("string")), "qid": Value("int64"), "img": Value("int64")}
    types[column] = List(Value(kind.split("-")[0])) if kind.endswith("-list") else Value(kind)
    table = Dataset.from_dict(rows, features=Features(types))
    DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "hf"))
    capsys.readouterr()  # the fixture's own progress bars
    err = _build(capsys, tmp_path, f"hf:{tmp_path / 'hf'}", "--set", "data.columns=" + json.dumps(HF_COLUMNS))
    assert message in err and "split 'train'" in err


def _special(path: Path, kind: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
        return "is not a regular file (it is a FIFO"
    path.symlink_to("/dev/zero")
    return "is not a regular file (it is a character device)"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("command", ["table", "validate"])
def test_results_commands_refuse_a_record_that_is_not_a_regular_file(tmp_path, capsys, kind, command):
    write_record(tmp_path / "runs", make_record("vilt", 0, {"1": 1.0}))
    message = _special(tmp_path / "runs" / "vqa" / "shapes" / "vilt" / "seed-1.json", kind)
    assert main([command, str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "unexpected" not in err and message in err and "seed-1.json" in err, err
    assert err.splitlines()[-1].startswith("error:")  # validate lists each bad record, then one summary line


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("role", ["-p", "-r"])
def test_score_refuses_a_file_that_is_not_a_regular_file(tmp_path, capsys, kind, role):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"question_id": 1, "answer": "red"}]))
    message = _special(tmp_path / "special.json", kind)
    files = {"-p": good, "-r": good, role: tmp_path / "special.json"}
    assert main(["score", "--task", "vqa", "-p", str(files["-p"]), "-r", str(files["-r"])]) == 2
    assert message in _one_error(capsys)


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path):
    from vlbench.io import UnreadableFileError, read_regular_bytes

    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b" " * 100 + b"]")
    assert read_regular_bytes(path, limit=102) == path.read_bytes()
    with pytest.raises(UnreadableFileError, match="is larger than 101 bytes"):
        read_regular_bytes(path, limit=101)


def test_a_lone_surrogate_in_a_record_is_printed_escaped(tmp_path, capsys):
    """A hand-edited record naming a baseline with a lone surrogate: every table format prints it escaped."""
    for seed in (0, 1):
        write_record(tmp_path, make_record("vi\ud800lt", seed, {"1": 1.0, "2": 0.0}), name="b")
    for fmt in ("rich", "md", "csv", "latex", "html", "json"):
        assert main(["table", str(tmp_path), "--format", fmt]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "\ud800" not in out and "ud800" in out, fmt
    assert main(["table", str(tmp_path), "--format", "md", "--out", str(tmp_path / "t.md")]) == 0
    assert "vi\\ud800lt" in (tmp_path / "t.md").read_text(encoding="utf-8")
    assert main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "site")]) == 0


def test_an_eof_error_is_not_reported_as_ctrl_c(tmp_path, capsys, monkeypatch):
    """click turns an EOFError into Abort (meant for a prompt's end of input); vlbench has no prompt, so an
    EOFError is a file ending early (a gzip, a pickle): an unexpected error, exit 1, not "interrupted" (130)."""
    import vlbench.results.records as records

    def truncated(*_):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(records, "read_records", truncated)
    assert main(["table", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: unexpected EOFError: Compressed file ended" in err and "interrupted" not in err
