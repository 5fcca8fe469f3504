"""`python -m eval.attributes`: questions from region records, scoring per attribute type, a tiny LLaVA run."""

import json

import pytest

from eval import attributes
from fgclip.cli import run
from tests.eval_lmm.conftest import make_images

RECORDS = [
    {
        "image": "images/0.png",
        "regions": [
            {
                "bbox": [0.1, 0.1, 0.6, 0.9],
                "caption": "a small brown dog",
                "hard_negatives": ["a small black dog", "a small white dog", "a small grey dog", "a large brown dog"],
            },
            {
                "bbox": [0.5, 0.5, 0.9, 0.9],
                "caption": "a wooden table",
                "hard_negatives": ["a metal table", "a glass table", "a plastic table"],
            },
        ],
    },
    {
        "image": "images/1.png",
        "regions": [
            {
                "bbox": [0.2, 0.2, 0.4, 0.4],
                "caption": "two white cats",
                "hard_negatives": ["three white cats", "four white cats"],
            },
            {"bbox": [0.2, 0.2, 0.4, 0.4], "caption": "a lamp"},  # no negatives: no questions, counted
        ],
    },
    {
        "image": "images/2.png",
        "regions": [{"bbox": [0.5, 0.2, 1.4, 0.4], "caption": "bad box", "hard_negatives": ["x"]}],
    },
]


@pytest.fixture
def data(tmp_path):
    make_images(tmp_path / "images", ["0.png", "1.png", "2.png"])
    path = tmp_path / "regions.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    return path


def read_questions(out):
    return [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]


def test_scores_a_hand_made_answers_file_per_type(data, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    # an empty answers file is an error, not an accuracy of 0; the questions are written first all the same
    assert run(attributes.main, ["--data", str(data), "--answers", str(empty), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: answers file {empty} is empty"
    questions = read_questions(out)
    # region 0: 2 yes/no + mc (colour); region 1: 2 yes/no + mc (material); region 2: 2 yes/no (count, 2 negatives)
    assert len(questions) == 8
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"question_id": questions[0]["question_id"], "text": "Yes"}) + "\n")
    nothing = attributes.main(["--data", str(data), "--answers", str(one), "--out", str(out)])
    assert nothing["num_missing"] == 7 and nothing["complete"] is False
    assert nothing["coverage"]["skipped"] == {"no_answer_scored_as_wrong": 7, "bad_records": 1}
    counts = nothing["counts"]
    assert counts["skipped_bad_records"] == 1 and counts["regions_without_negatives"] == 1
    assert counts["regions_with_fewer_than_3_negatives"] == 1
    kinds = {(q["question_id"], q["kind"], q["attribute_type"]) for q in questions}
    assert ("0:1:mc", "multiple_choice", "material") in kinds and ("1:0:yes", "yes_no", "count") in kinds

    answers = []
    for q in questions:
        if q["kind"] == "yes_no":
            # right on everything except the count questions, which get "Yes, there are." twice
            text = (
                "Yes, there are."
                if q["attribute_type"] == "count"
                else ("Yes" if q["answer"] == "yes" else "No, it is not.")
            )
        elif q["attribute_type"] == "colour":
            text = f"{q['answer']}."  # right letter
        else:
            text = "I am not sure"  # unparsed -> wrong
        answers.append({"question_id": q["question_id"], "text": text})
    filled = tmp_path / "answers.jsonl"
    filled.write_text("".join(json.dumps(a) + "\n" for a in answers))
    result = attributes.main(["--data", str(data), "--answers", str(filled), "--out", str(tmp_path / "scored")])
    per_type = result["per_type"]
    assert per_type["colour"] == pytest.approx(
        {"accuracy": 1.0, "yes_no": 1.0, "yes_no_questions": 2, "multiple_choice": 1.0, "multiple_choice_questions": 1}
    )
    assert per_type["material"]["yes_no"] == 1.0 and per_type["material"]["multiple_choice"] == 0.0
    assert per_type["count"]["yes_no"] == 0.5 and "multiple_choice" not in per_type["count"]
    assert result["yes_no_accuracy"] == pytest.approx(5 / 6)
    assert result["multiple_choice_accuracy"] == pytest.approx(1 / 2)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["num_missing"] == 0 and result["counts"]["unparsed_choices"] == 1
    assert (tmp_path / "scored" / "attributes.png").stat().st_size > 0
    assert "| colour |" in (tmp_path / "scored" / "results.md").read_text()


def test_runs_a_tiny_llava(tiny_llava, data, tmp_path):
    out = tmp_path / "out"
    argv = ["--data", str(data), "--model", str(tiny_llava), "--out", str(out), "--batch-size", "4"]
    argv += ["--max-new-tokens", "3"]
    result = attributes.main([*argv, "--kinds", "yes_no", "multiple_choice"])
    assert result["num_questions"] == 8 and result["num_missing"] == 0
    assert 0.0 <= result["accuracy"] <= 1.0 and set(result["per_type"]) == {"colour", "material", "count"}
    lines = (out / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 8
    again = attributes.main(argv)
    assert again["counts"]["generated_now"] == 0 and again["per_type"] == result["per_type"]


def test_only_yes_no_and_duplicated_regions_asked_once(data, tmp_path):
    data.write_text(data.read_text() + json.dumps(RECORDS[0]) + "\n")  # the first record again
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": "0:0:yes", "text": "Yes"}) + "\n")
    result = attributes.main(
        ["--data", str(data), "--answers", str(answers), "--out", str(tmp_path / "o"), "--kinds", "yes_no"]
    )
    assert result["num_questions"] == 6 and "multiple_choice_accuracy" not in result
    assert result["counts"]["duplicate_regions"] == 2 and "2 duplicates scored once" in result["note"]


def test_data_errors_exit_2(tmp_path, capsys):
    no_negatives = tmp_path / "plain.jsonl"
    no_negatives.write_text(
        json.dumps({"image": "a.png", "regions": [{"bbox": [0, 0, 1, 1], "caption": "a dog"}]}) + "\n"
    )
    answers = tmp_path / "a.jsonl"
    answers.write_text("")
    for argv in (
        ["--data", str(no_negatives), "--answers", str(answers)],
        ["--data", str(tmp_path / "none.jsonl"), "--answers", str(answers)],
        ["--data", str(no_negatives)],
    ):
        assert run(attributes.main, [*argv, "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err.startswith("error: ")
