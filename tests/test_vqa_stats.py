"""`vlbench data stats` on an official-layout VQA v2 folder: question-only bounds against hand-computed values."""

from __future__ import annotations

import json

import pytest

from tests.official_layouts import write_vqav2_split
from vlbench.cli.main import main

# train2014: a held-out image (val_fraction) never changes these priors: what color -> red, how many -> 2, is there -> yes
TRAIN = [row for image_id, color, circle in ((1, "red", "yes"), (2, "red", "yes"), (3, "red", "yes"), (4, "blue", "no"))
         for row in ({"image_id": image_id, "question": "what color is the shape?", "question_type": "what color is the",
                      "answer_type": "other", "answers": [color] * 10},
                     {"image_id": image_id, "question": "how many shapes are there?", "question_type": "how many",
                      "answer_type": "number", "answers": ["2"] * 10},
                     {"image_id": image_id, "question": "is there a circle?", "question_type": "is there a",
                      "answer_type": "yes/no", "answers": [circle] * 10})]


def _q(image_id, question, qtype, atype, answers):
    return {"image_id": image_id, "question": question, "question_type": qtype, "answer_type": atype, "answers": answers}


COLOR, COUNT, CIRCLE = "what color is the shape?", "how many shapes are there?", "is there a circle?"
# val2014 is the test split. Official accuracy of an answer given by k of 10 humans: k >= 4: 1.0, 3: 0.9, 2: 0.6
TEST = [
    _q(500001, COLOR, "what color is the", "other", ["blue"] * 8 + ["red"] * 2),   # blue 1.0, red 0.6
    _q(500002, COLOR, "what color is the", "other", ["green"] * 10),               # green 1.0
    _q(500003, COUNT, "how many", "number", ["3"] * 7 + ["2"] * 3),                # 3 1.0, 2 0.9
    _q(500004, CIRCLE, "is there a", "yes/no", ["no"] * 10),                       # no 1.0
    _q(500005, CIRCLE, "is there a", "yes/no", ["yes"] * 8 + ["no"] * 2),          # yes 1.0, no 0.6
    _q(500006, CIRCLE, "is there a", "yes/no", ["yes"] * 7 + ["no"] * 3),          # yes 1.0, no 0.9
    # another string; unanimous, so compared as written: "Yes" 1.0, "yes" 0
    _q(500007, "Is there a circle?", "is there a", "yes/no", ["Yes"] * 10),
]


@pytest.fixture
def vqav2_dir(tmp_path):
    root = tmp_path / "vqav2"
    write_vqav2_split(root, "train2014", TRAIN)
    write_vqav2_split(root, "val2014", TEST, first_question_id=100)
    return root


def test_bounds_of_an_official_vqav2_folder(vqav2_dir, tmp_path, capsys):
    assert main(["data", "stats", f"vqav2:{vqav2_dir}", "--format", "json", "--cache-dir", str(tmp_path / "c")]) == 0
    bounds = json.loads(capsys.readouterr().out)
    assert bounds["n_test_questions"] == 7 and bounds["n_question_strings"] == 4
    assert bounds["prior_answers"] == {"what color is the": "red", "how many": "2", "is there a": "yes"}
    # prior: red 0.6 + 0 | 2 0.9 | 0 + yes 1 + yes 1 + "yes" against unanimous "Yes" 0 = 3.5 / 7
    assert bounds["prior"]["overall"] == pytest.approx(50.0)
    assert bounds["prior"]["perAnswerType"] == pytest.approx({"other": 30.0, "number": 90.0, "yes/no": 50.0})
    # test majority per string (ties alphabetical): blue (1, 0) | 3 (1) | yes (0, 1, 1) | Yes (1) = 5 / 7
    assert bounds["question_majority"]["overall"] == pytest.approx(71.43)
    # best total per string: blue 1.0 = green 1.0 > red 0.6 -> blue | 3 | no 2.5 > yes 2.0 | Yes = 5.5 / 7
    assert bounds["question_oracle"]["overall"] == pytest.approx(78.57)
    assert bounds["question_oracle"]["perAnswerType"] == pytest.approx({"other": 50.0, "number": 100.0, "yes/no": 87.5})
    assert bounds["plurality_ceiling"]["overall"] == pytest.approx(100.0)


def test_the_table_and_bad_input(vqav2_dir, tmp_path, capsys):
    assert main(["data", "stats", f"vqav2:{vqav2_dir}", "-q", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "text-only" in out and "78.57" in out and "plurality" in out  # (labels wrap in a narrow terminal)
    assert main(["data", "stats", f"vqav2:{vqav2_dir}", "--test-split", "dev", "-q",
                 "--cache-dir", str(tmp_path / "c")]) == 2
    assert "'dev'" in capsys.readouterr().err


def test_tables_show_leakage_of_text_only_rows_and_flag_a_score_above_the_ceiling():
    from tests.results_fixtures import make_record
    from vlbench.results.table import aggregate, render

    items = {str(i): float(i % 2) for i in range(10)}  # 50% accuracy
    bounds = (30.0, 45.0)  # the data's prior and text-only ceiling
    records = [make_record("text-bert", s, items, modalities=["text"], question_only=bounds) for s in range(2)]
    records += [make_record("vilt", s, items, question_only=bounds) for s in range(2)]
    rows = {r["baseline"]: r for r in aggregate(records).rows if r["primary"]}
    assert rows["text-bert"]["leakage"] == pytest.approx(20.0) and rows["text-bert"]["above_text_ceiling"] is True
    assert rows["vilt"]["leakage"] is None and rows["vilt"]["above_text_ceiling"] is None
    md = render(aggregate(records), "md")
    assert "leakage (text-only − prior)" in md and "+20.00 (above the text-only ceiling 45.00)" in md
    honest = [make_record("text-bert", s, items, modalities=["text"], question_only=(30.0, 60.0)) for s in range(2)]
    row = next(r for r in aggregate(honest).rows if r["primary"])
    assert row["leakage"] == pytest.approx(20.0) and row["above_text_ceiling"] is False
    assert "above the text-only ceiling" not in render(aggregate(honest), "md")
    for fmt in ("csv", "json"):
        assert "above_text_ceiling" in render(aggregate(records), fmt)
    assert "leakage" not in render(aggregate(records[2:]), "md")  # no text-only row: no column, no note
