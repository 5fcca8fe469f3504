"""`python -m eval.localization`: hand-made answers (formats, padding, failures), a tiny LLaVA run."""

import json

import pytest

from eval import localization
from fgclip.cli import run
from fgclip.llava.boxes import box_to_square, format_box
from tests.eval_lmm.conftest import generation_options, make_images

SIZES = [(64, 48), (48, 64), (40, 40)]
ITEMS = [
    {"id": "a", "image": "0.png", "expression": "the left dog", "bbox": [0.1, 0.2, 0.5, 0.8]},
    {"id": "b", "image": "1.png", "expression": "the white cat", "bbox": [0.25, 0.25, 0.75, 0.75]},
    {"id": "c", "image": "2.png", "expression": "the red car", "bbox": [0.0, 0.0, 0.5, 0.5]},
    {"id": "d", "image": "0.png", "expression": "the lamp", "bbox": [0.6, 0.1, 0.9, 0.4]},
    {"id": "e", "image": "1.png", "expression": "the tree", "bbox": [0.1, 0.1, 0.2, 0.2]},
]


@pytest.fixture
def data(tmp_path):
    make_images(tmp_path, ["0.png", "1.png", "2.png"], SIZES)
    path = tmp_path / "refs.jsonl"
    lines = [json.dumps(item) for item in ITEMS] + [
        "{not json",
        json.dumps({"id": "z", "image": "0.png", "expression": "x", "bbox": [0, 0, 2, 1]}),
    ]
    lines.append(json.dumps({**ITEMS[1], "id": "b2"}))  # item b again under another id: scored once, counted
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_hand_made_answers(data, tmp_path):
    in_square = box_to_square(ITEMS[0]["bbox"], *SIZES[0])  # what a LLaVA-1.5 model would say for item a
    answers = [
        {"question_id": "a", "text": f"Sure, the box is {format_box(in_square)}."},  # exact after unpadding
        {"question_id": "b", "text": "(x1=0.25, y1=0.25, x2=0.75, y2=0.75)"},  # 48x64 padded 8 px each side: shifted
        {"question_id": "c", "text": "[50, 50, 0, 0]"},  # percent, swapped corners; square image
        {"question_id": "d", "text": "I cannot see a lamp."},  # parse failure
        # e: missing
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    out = tmp_path / "out"
    result = localization.main(["--data", str(data), "--answers", str(path), "--out", str(out)])
    rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()}
    assert rows["a"]["iou"] == pytest.approx(1.0, abs=0.03)  # two-decimal rounding
    assert rows["c"]["iou"] == pytest.approx(1.0) and rows["c"]["scale"] == "percent"
    # b: x 0.25..0.75 of the 64-wide square is 16..48 px -> 8..40 of the 48-px image = 1/6..5/6
    assert rows["b"]["predicted"] == pytest.approx([8 / 48, 0.25, 40 / 48, 0.75])
    assert rows["b"]["iou"] == pytest.approx(0.5 / (2 / 3))
    assert rows["d"]["predicted"] is None and rows["e"]["answer"] is None
    assert result["num_items"] == 5 and result["num_parse_failures"] == 1 and result["num_missing"] == 1
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["acc_at_iou"]["0.9"] == pytest.approx(2 / 5)
    assert result["mean_iou"] == pytest.approx((rows["a"]["iou"] + rows["b"]["iou"] + 1.0) / 5)
    assert result["counts"]["skipped_bad_lines"] == 2 and result["counts"]["scale_normalised"] == 2
    assert result["counts"]["duplicate_items"] == 1 and result["complete"] is False
    assert result["note"] == (
        "scored 4 of 7 items; skipped: bad_lines 2, no_answer_scored_as_wrong 1; 1 duplicates scored once"
    )
    assert (out / "localization.png").stat().st_size > 0

    unpadded = localization.main(
        ["--data", str(data), "--answers", str(path), "--out", str(tmp_path / "o2"), "--no-pad-to-square"]
    )
    assert unpadded["details"]["boxes_in_padded_square"] is False
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (tmp_path / "o2" / "predictions.jsonl").read_text().splitlines()
    }
    assert rows["b"]["iou"] == pytest.approx(1.0)  # read as it is written
    assert rows["a"]["iou"] == pytest.approx(0.45 / 0.6, abs=0.03)  # the square's y range is no longer undone


def test_runs_a_tiny_llava(tiny_llava, data, tmp_path):
    out = tmp_path / "out"
    argv = ["--data", str(data), *generation_options(tiny_llava, out, 12, "--batch-size", "2", "--limit", "3")]
    result = localization.main(argv)
    assert result["num_items"] == 3 and result["num_missing"] == 0
    assert result["num_parse_failures"] + sum(v for k, v in result["counts"].items() if k.startswith("scale_")) == 3
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"] == (
        "Please provide the bounding box coordinate of the region this sentence describes: the left dog"
    )
    assert localization.main(argv)["counts"]["generated_now"] == 0


def test_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    answers = tmp_path / "a.jsonl"
    answers.write_text("")
    for argv in (
        ["--data", str(bad), "--answers", str(answers)],
        ["--data", str(tmp_path / "none.jsonl"), "--answers", str(answers)],
        ["--data", str(bad), "--answers", str(answers), "--model", str(tmp_path)],
    ):
        assert run(localization.main, [*argv, "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err.startswith("error: ")
