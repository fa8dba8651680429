"""Every kind of bad input: exit code 2, one `error:` line, no traceback, and finished records untouched."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.conftest import TINY_DATA
from vlbench.cli.main import main
from vlbench.registry import TASK_TYPES


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    """A results folder holding one finished record (the prior baseline trains nothing: fast)."""
    import os

    os.environ["VLBENCH_CACHE"] = str(cache_dir)
    results = tmp_path_factory.mktemp("finished")
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(results), "--quiet", *TINY_DATA]) == 0
    record = results / "vqa" / "shapes" / "prior" / "seed-0.json"
    return results, record


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


def _plugin(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


RUN_CASES = [
    # a boolean for a number: pydantic's lax mode would read true as 1 (one epoch, one layer) without a word
    (["--set", "training.epochs=true"], "field 'epochs' takes a number, got the boolean true"),
    (["--set", "task.options.image_size=false"], "field 'image_size' takes a number, got the boolean false"),
    (["--set", "training.patience=true"], "field 'patience' takes a number, got the boolean true"),
    (["--set", "data.train_images=true"], "field 'train_images' takes a number, got the boolean true"),
    (["--set", "training.lr=true"], "field 'lr' takes a number, got the boolean true"),
    (["--set", "training=5"], "group of settings"),
    (["--set", "task=null"], "group of settings"),
    (["--set", "training..epochs=1"], "empty part"),
    (["--lr", "1e300"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--seeds", "99999999999999999999"], "--seeds"),
    (["--seeds", "0-100000000000"], "above 4294967295"),
    (["--seeds", "0-5000"], "more than 1000 seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "4-2"], "backwards"),
    (["--set", "training.seeds=[99999999999999999999]"], "training.seeds"),
    (["--epochs", "0"], "epochs=0 trains nothing"),
    (["--batch-size", "100000000000000000000"], "training.batch_size"),
    (["--set", "training.weight_decay=.inf"], "training.weight_decay"),
    (["--set", "training.lr=[1, 2]"], "training.lr"),
    (["--robustness-suites", "fog"], "unknown suite 'fog'"),
    (["--robustness-suites", "text,text"], "name each suite once"),
    (["--robustness", "--set", "training.robustness.severities=[0,6]"], "severities are distinct whole numbers 1..5"),
    (["--robustness", "--set", "training.robustness.attack_budgets=[-1]"], "attack budgets"),
    (["--set", "training.robustness.suites=[fog]"], "training.robustness.suites"),
]


@pytest.mark.parametrize("extra, message", RUN_CASES, ids=[" ".join(c[0]) for c in RUN_CASES])
def test_bad_run_input(finished, capsys, extra, message):
    results, record = finished
    before, stamp = record.read_bytes(), record.stat().st_mtime_ns
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(results), "--quiet",
                 "--force", *TINY_DATA, *extra]) == 2
    assert message in _one_error(capsys)
    assert record.read_bytes() == before and record.stat().st_mtime_ns == stamp


def test_epochs_0_with_max_steps_trains_exactly_those_steps(tmp_path):
    small = ["--set", "baseline.config.hidden_size=32", "--set", "baseline.config.num_layers=1",
             "--set", "baseline.config.num_heads=2", "--set", "baseline.config.intermediate_size=64"]
    assert main(["run", "--task", "vqa", "--baseline", "text-bert", "--results-dir", str(tmp_path), "--quiet",
                 "--epochs", "0", "--max-steps", "3", *TINY_DATA, *small]) == 0
    record = json.loads((tmp_path / "vqa" / "shapes" / "text-bert" / "seed-0.json").read_text())
    assert record["training"]["steps"] == 3


PLUGINS = [
    ("exits", "import sys\nsys.exit(3)\n", "sys.exit(3)"),
    ("raises", "raise ValueError('plugin is broken')\n", "plugin is broken"),
    ("syntax", "def broken(:\n", "SyntaxError"),
    ("interrupt", "raise KeyboardInterrupt\n", "failed to load: KeyboardInterrupt"),
    ("generator_exit", "raise GeneratorExit('done')\n", "failed to load: GeneratorExit: done"),
    ("base_exception", "class Odd(BaseException):\n    pass\n\nraise Odd('odd')\n", "failed to load: Odd: odd"),
    ("replaces", "from vlbench.registry import register_task\n\n@register_task('vqa')\nclass MyVQA:\n    pass\n",
     "task type 'vqa' is already registered"),
]


@pytest.mark.parametrize("name, body, message", PLUGINS, ids=[p[0] for p in PLUGINS])
@pytest.mark.parametrize("command", ["run", "list"])
def test_bad_plugins(finished, tmp_path, capsys, monkeypatch, name, body, message, command):
    # a plugin must not leak into other tests; iterating loads the built-ins first, so the copy holds them
    monkeypatch.setattr(TASK_TYPES, "_entries", {key: TASK_TYPES.entry(key) for key in TASK_TYPES})
    results, record = finished
    before = record.read_bytes()
    plugin = _plugin(tmp_path, f"{name}_{command}", body)
    args = (["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(results), "--force", "--quiet", *TINY_DATA]
            if command == "run" else ["list", "tasks"])
    assert main([*args, "--plugin", plugin]) == 2
    assert message in _one_error(capsys)
    assert record.read_bytes() == before


def test_a_plugin_may_replace_a_built_in_only_on_purpose_and_is_announced(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(TASK_TYPES, "_entries", {key: TASK_TYPES.entry(key) for key in TASK_TYPES})
    plugin = _plugin(tmp_path, "overrides", "from vlbench.registry import register_task\n\n"
                                            "@register_task('vqa', override=True)\nclass MyVQA:\n    '''Mine.'''\n")
    assert main(["list", "tasks", "--plugin", plugin]) == 0
    err = capsys.readouterr().err
    assert "warning: task type 'vqa'" in err and "replaced by" in err and "MyVQA" in err
    assert TASK_TYPES.get("vqa").__name__ == "MyVQA"


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)

SPECS = [
    ("alias bomb", "type: vqa\nprimary_metric: accuracy\n" + BOMB, "expands to more than"),
    ("deep nesting", "type: vqa\nprimary_metric: accuracy\noptions: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
    ("duplicate key", "type: vqa\ntype: retrieval\nprimary_metric: accuracy\n", "appears twice"),
    ("many aliases", "type: vqa\nprimary_metric: accuracy\nx: &x 1\nl: [" + ", ".join(["*x"] * 200) + "]\n", "aliases"),
]


@pytest.mark.parametrize("name, text, message", SPECS, ids=[s[0] for s in SPECS])
def test_hostile_yaml_specs_are_refused_fast(finished, tmp_path, capsys, name, text, message):
    results, record = finished
    before = record.read_bytes()
    spec = tmp_path / "hostile.yaml"
    spec.write_text(text)
    start = time.perf_counter()
    assert main(["run", "--task", str(spec), "--baseline", "prior", "--results-dir", str(results), "--quiet"]) == 2
    assert time.perf_counter() - start < 20  # bounded work, not a hang (generous for a loaded 2-core machine)
    assert message in _one_error(capsys)
    assert record.read_bytes() == before


def test_non_utf8_spec(tmp_path, capsys):
    spec = tmp_path / "binary.yaml"
    spec.write_bytes(b"type: vqa\n\xff\xfe\x00name: x\n")
    assert main(["run", "--task", str(spec), "--baseline", "prior", "--results-dir", str(tmp_path)]) == 2
    assert "UTF-8" in _one_error(capsys)


def test_alias_bomb_in_set_value(finished, capsys):
    results, _ = finished
    levels = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    for value, message in (("[" + ", ".join(levels) + "]", "expands to more than"),
                           ("[&x 1, " + ", ".join(["*x"] * 150) + "]", "aliases")):
        assert main(["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(results),
                     "--set", f"task.options.x={value}"]) == 2
        assert message in _one_error(capsys)


# --- vlbench score ---------------------------------------------------------------------------------

VQA_REF = {"annotations": [{"question_id": 1, "question_type": "what color", "answer_type": "other",
                            "multiple_choice_answer": "red", "answers": [{"answer": "red", "answer_id": i} for i in range(10)]}]}


def _score(tmp_path, capsys, predictions, references, *extra, task="vqa"):
    pred, ref = tmp_path / "pred", tmp_path / "ref.json"
    if isinstance(predictions, bytes):
        pred.write_bytes(predictions)
    else:
        pred.write_text(predictions)
    ref.write_text(references if isinstance(references, str) else json.dumps(references))
    code = main(["score", "--task", task, "-p", str(pred), "-r", str(ref), "--quiet", *extra])
    return code, _one_error(capsys) if code == 2 else capsys.readouterr()


GOOD_PRED = json.dumps([{"question_id": 1, "answer": "red"}])


def test_score_accepts_the_good_files(tmp_path, capsys):
    code, captured = _score(tmp_path, capsys, GOOD_PRED, VQA_REF, "--format", "json")
    assert code == 0, captured.err
    assert json.loads(captured.out)["overall"] == 100.0


@pytest.mark.parametrize("predictions, references, message", [
    ("[" * 200_000 + "]" * 200_000, VQA_REF, "nested too deeply"),
    ('[{"question_id": ' + "9" * 5000 + ', "answer": "red"}]', VQA_REF, "digits"),
    ('[{"question_id": NaN, "answer": "red"}]', VQA_REF, "NaN"),
    (GOOD_PRED, {"annotations": [{**VQA_REF["annotations"][0], "question_type": ["what", "color"]}]}, "question_type"),
    (GOOD_PRED, {"annotations": [{**VQA_REF["annotations"][0], "answers": [["red"]] * 10}]}, "answer"),
    ('[{"question_id": 1, "answer": ' + "[" * 900 + "]" * 900 + "}]", VQA_REF, "string answer"),
], ids=["deep", "5000-digits", "nan", "question_type-list", "answers-not-objects", "deep-answer"])
def test_bad_score_json(tmp_path, capsys, predictions, references, message):
    code, err = _score(tmp_path, capsys, predictions, references)
    assert code == 2 and message in err


def test_score_output_pointing_at_a_folder(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    code, err = _score(tmp_path, capsys, GOOD_PRED, VQA_REF, "--output", str(folder))
    assert code == 2 and "is a folder" in err and folder.is_dir() and not list(folder.iterdir())


def _npy_header(shape, dtype="<f4"):
    from numpy.lib import format as npy
    import io

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04" + b"\x00" * 40, "zip"),
    (_npy_header((10**6, 10**6)) + b"\x00" * 64, "header says shape"),
    (_npy_header((2, 3)) + b"\x00" * 8, "truncated"),
    (b"\x93NUMPY\x01\x00\xff\xff{'descr': garbage", "broken .npy header"),
    (_npy_header((2, 3), "|O") + b"\x00" * 48, "2-D numeric"),
    (b"just text", "not a .npy"),
], ids=["zip", "huge-shape", "short-data", "broken-header", "object-dtype", "text"])
def test_bad_similarity_npy(tmp_path, capsys, content, message):
    code, err = _score(tmp_path, capsys, content, {"text_to_image": [0, 1, 1]}, task="retrieval")
    assert code == 2 and message in err


def test_good_similarity_npy_still_scores(tmp_path, capsys):
    buffer = tmp_path / "sim.npy"
    np.save(buffer, np.array([[0.9, 0.1, 0.2], [0.0, 0.8, 0.7]], dtype=np.float32))
    (tmp_path / "t2i.json").write_text(json.dumps({"text_to_image": [0, 1, 1]}))
    assert main(["score", "--task", "retrieval", "-p", str(buffer), "-r", str(tmp_path / "t2i.json"), "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["t2i_R@1"] == 100.0


# --- vlbench data / list ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["data", "build", "shapes", "--set", "data.=3"], "empty part"),
    (["data", "build", "shapes", "--set", "data.train_images"], "key.path=value"),
    (["list", "tasks", "--format", "yaml"], "--format"),
])
def test_bad_data_and_list_input(capsys, args, message):
    assert main(args) == 2
    assert message in _one_error(capsys)


def test_multi30k_mscoco_test_set_is_refused_with_one_line(tmp_path, capsys):
    from tests.dataset_fixtures import make_multi30k

    root = make_multi30k(tmp_path / "m30k")
    raw, image_splits = root / "data" / "task1" / "raw", root / "data" / "task1" / "image_splits"
    (raw / "test_2017_mscoco.en").write_text("A dog on a bench.\nA cat.\n", encoding="utf-8")
    (raw / "test_2017_mscoco.de").write_text("Ein Hund auf einer Bank.\nEine Katze.\n", encoding="utf-8")
    (image_splits / "test_2017_mscoco.txt").write_text("COCO_val2014_000000000042.jpg#2\nCOCO_train2014_000000000036.jpg#0\n")
    args = ["data", "build", f"multi30k:{root}", "--set", "data.test_set=test_2017_mscoco"]
    assert main(args) == 2
    err = _one_error(capsys)
    assert "'test_2017_mscoco' names COCO images" in err and "'COCO_val2014_000000000042.jpg#2'" in err
    assert "test_2016_flickr" in err  # the line says what to use instead
    assert main(["data", "build", f"multi30k:{root}"]) == 0  # the Flickr30k test set of the same folder builds


def test_debug_still_shows_the_traceback(finished, capsys):
    results, _ = finished
    assert main(["--debug", "run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(results),
                 "--set", "training=5"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_lone_surrogate_caption_is_refused(tmp_path, capsys):
    pred = tmp_path / "captions.json"
    pred.write_text('[{"image_id": 1, "caption": "a \\ud800 dog"}]')
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"images": [{"id": 1}], "annotations": [{"image_id": 1, "id": 1, "caption": "a dog"}]}))
    assert main(["score", "--task", "captioning", "-p", str(pred), "-r", str(ref), "--quiet"]) == 2
    assert "valid Unicode" in _one_error(capsys)


def test_missing_device_fails_before_any_data_is_built(tmp_path, capsys, monkeypatch):
    import torch

    from vlbench.runner import sweep

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sweep, "load_dataset", lambda *a, **k: pytest.fail("the dataset was built"))
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--device", "cuda", "--results-dir", str(tmp_path)]) == 2
    assert "--device cuda" in _one_error(capsys)


# --- refused when the run is planned: nothing trained, nothing written (issue 24 "Bad input that trains first";
# issue 20 items 3-4). Kept as one block, apart from the file-reader cases above. ------------------------------

def _tree(folder):
    """Every path under a folder with its size and modification time: what "nothing written" compares."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


LONG = "a" * 300  # longer than any file name a Linux file system allows (255 bytes)

# (task, baseline, extra arguments, what the one error line says)
PLANNED_CASES = [
    ("vqa", "prior", ["--set", "task.primary_metric=bogus"],
     "'primary_metric': 'bogus' cannot select checkpoints of task type 'vqa': its validation reports accuracy, "
     "accuracy/<answer type>"),
    ("vqa", "prior", ["--set", "task.primary_metric=accuracy/bogus"],
     "names no answer type of both the validation and the test split"),
    ("vqa", "prior", ["--set", "task.options.image_size=0"], "field 'image_size': image_size 0 is outside 8..4096"),
    ("vqa", "vilt", ["--set", "task.options.image_size=-64"], "image_size -64 is outside 8..4096"),
    ("vqa", "vilt", ["--set", "task.options.max_text_length=0"], "field 'max_text_length': max_text_length 0 is outside"),
    ("vqa", "vilt", ["--set", "baseline.config.num_heads=3"], "field 'num_heads': hidden_size 128 is not a multiple of num_heads 3"),
    ("vqa", "vilt", ["--set", "baseline.config.patch_embedding=linear", "--set", "baseline.config.patch_size=1000"],
     "patch_size 1000 is larger than the task's image_size 64"),
    ("vqa", "vilt", ["--set", "baseline.config.patch_size=1000"], "patch_embedding 'conv' needs a power-of-two patch_size"),
    ("vqa", "image-only", ["--set", "baseline.config.backbone=patch", "--set", "baseline.config.patch_size=48"],
     "image_size 64 is not a multiple of patch_size 48"),
    ("retrieval", "retrieval-dual", ["--set", "baseline.config.patch_size=1000"], "patch_size 1000 is larger"),
    ("captioning", "captioner-vilt", ["--set", "task.options.decoder.num_heads=3"],
     "the decoder takes the encoder's hidden_size 128, which its num_heads 3 do not divide"),
    ("vqa", "prior", ["--dataset", ""], "--dataset '': name a dataset"),
    ("vqa", "prior", ["--seeds", "\u00b2"], "--seeds '\u00b2': expected integers"),
    ("vqa", "prior", ["--set", "task.options={image_size: .nan}"], "task.options.image_size is not a finite number"),
    ("vqa", "prior", ["--set", "task.data={train_images: .inf}"], "task.data.train_images is not a finite number"),
    ("vqa", "vilt", ["--set", "baseline.config={dropout: [1, -.inf]}"], "baseline.config.dropout[1] is not a finite"),
    ("vqa", "prior", ["--results-dir", "/tmp/" + LONG], "'--results-dir': the name 'aaaaaaaa"),
    ("vqa", "prior", ["--cache-dir", "/tmp/" + LONG], "'--cache-dir': the name 'aaaaaaaa"),
    ("vqa", "prior", ["--task", f"/tmp/{LONG}.yaml"], "a name or path is longer than the file system allows"),
    ("vqa", "prior", ["--baseline", f"/tmp/{LONG}.yaml"], "a name or path is longer than the file system allows"),
    ("vqa", "prior", ["--plugin", f"/tmp/{LONG}.py"], "a name or path is longer than the file system allows"),
    ("vqa", "prior", ["--set", "task.data={}", "--dataset", f"vqav2:/tmp/{LONG}"],  # (no shapes sizes for vqav2)
     "a name or path is longer than the file system allows"),
    ("vqa", "text-minilm", ["--set", f"baseline.pretrained=/tmp/{LONG}"], "longer than the file system allows"),
]


@pytest.mark.parametrize("task, baseline, extra, message", PLANNED_CASES,
                         ids=[" ".join([c[1], *c[2]])[:80] for c in PLANNED_CASES])
def test_refused_when_planned(finished, capsys, task, baseline, extra, message):
    results, _ = finished
    before = _tree(results)
    assert main(["run", "--task", task, "--baseline", baseline, "--results-dir", str(results), "--quiet",
                 "--force", *TINY_DATA, *extra]) == 2
    assert message in _one_error(capsys)
    assert _tree(results) == before


def test_an_empty_results_dir_is_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--results-dir", "", "--quiet", *TINY_DATA]) == 2
    assert "'--results-dir': an empty path" in _one_error(capsys)
    assert not list(tmp_path.iterdir())


def test_verifying_a_cache_folder_that_is_not_there(tmp_path, capsys):
    assert main(["data", "verify", "--cache-dir", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in _one_error(capsys)


def test_close_fractions_get_folders_of_their_own(tmp_path):
    assert main(["run", "--task", "vqa", "--baseline", "prior", "--results-dir", str(tmp_path), "--quiet",
                 "--train-fraction", "0.5,0.5000001", *TINY_DATA]) == 0
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["fraction-0.5", "fraction-0.5000001"]
    fractions = [json.loads((tmp_path / f / "vqa" / "shapes" / "prior" / "seed-0.json").read_text())
                 ["config"]["task"]["train_subset"]["fraction"] for f in folders]
    assert fractions == [0.5, 0.5000001]


@pytest.mark.parametrize("body, message", [
    ("type: vqa\nmetrics: [vqa_accuracy]\nprimary_metric: accuracy\n", "field 'metrics' was removed"),
    ("type: vqa\nprimary_metric: accuracy\noptions: {image_size: 64, extra: {x: .nan}}\n",
     "field 'task.options.extra.x' is not a finite number"),
], ids=["removed-metrics-list", "nan-in-spec"])
def test_task_specs_refused_when_planned(finished, tmp_path, capsys, body, message):
    results, _ = finished
    before = _tree(results)
    spec = tmp_path / "vqa.yaml"  # named like a task the prior baseline supports
    spec.write_text(body)
    assert main(["run", "--task", str(spec), "--baseline", "prior", "--results-dir", str(results), "--quiet"]) == 2
    assert message in _one_error(capsys)
    assert _tree(results) == before
