"""The miniature-claim benchmark's table, from scores of hand-made answers (the miniature run itself is
tested in tests/lmm_integration)."""

import pytest

from benchmarks.llava_miniature.questions import Question, Vocabulary
from benchmarks.llava_miniature.score import chance_levels, score
from benchmarks.lmm_miniature import _chance, claim_rows, claim_table, main

VOCABULARY = Vocabulary(
    ("red", "blue", "green", "white"), ("small", "large"), ("solid", "striped"), ("circle", "square")
)
QUESTIONS = [
    Question("c", "a.png", "colour", "What colour is the circle?", "red"),
    Question("t", "a.png", "texture", "Is the circle solid or striped?", "solid"),
    Question("y", "a.png", "yes_no", "Is there a red circle in the image?", "Yes"),
    Question("n", "a.png", "yes_no", "Is there a blue square in the image?", "No"),
    Question("w", "a.png", "where", "Where is the circle?", "[0.10, 0.10, 0.50, 0.50]", [0.1, 0.1, 0.5, 0.5]),
]


def scored(answers):
    return score(QUESTIONS, answers, VOCABULARY, {"a.png": (64, 64)}, chance_levels(VOCABULARY, 0.2))


def test_claim_rows_hold_the_three_figures_per_tower():
    fine = scored({"c": "red", "t": "solid", "y": "Yes, there is.", "n": "No.", "w": "[0.1, 0.1, 0.5, 0.5]"})
    coarse = scored({"c": "blue", "t": "solid", "y": "Yes", "n": "Yes", "w": "[0.6, 0.6, 0.9, 0.9]"})
    rows = claim_rows({"stage 1 tower": coarse, "stage 2 tower": fine})
    assert [row["tower"] for row in rows] == ["stage 1 tower", "stage 2 tower"]
    assert (rows[1]["pope_f1"], rows[1]["attribute_accuracy"], rows[1]["localisation_acc50"]) == (1.0, 1.0, 1.0)
    # stage 1 tower: yes to both -> precision 1/2, recall 1, F1 2/3; one attribute of two; box missed
    assert rows[0]["pope_f1"] == pytest.approx(2 / 3) and rows[0]["pope_yes_ratio"] == 1.0
    assert (rows[0]["attribute_accuracy"], rows[0]["localisation_acc50"]) == (0.5, 0.0)
    assert (rows[0]["yes_no_questions"], rows[0]["attribute_questions"], rows[0]["where_questions"]) == (2, 2, 1)
    chance = _chance(coarse)
    assert chance["attributes"] == pytest.approx((1 / 4 + 1 / 2) / 2) and chance["where"] == 0.2
    table = claim_table(rows, chance)
    assert "| stage 2 tower | 1.000 | 1.000 | 0.50 | 1.000 | 1.000 | 1.000 |" in table
    assert "2 yes/no, 2 attribute, 1 where" in table


def test_missing_tower_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--stage1", str(tmp_path / "nope"), "--stage2", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and "run `python scripts/pretrain_fgclip.py` first" in capsys.readouterr().err
