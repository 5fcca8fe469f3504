"""The append-only answers file: reading other tools' formats, torn tails, prompt checks."""

import json

import pytest

from eval.lmm.answers_file import AnswerWriter, check_same_prompts, read_answers, repair_torn_tail
from fgclip.errors import UserError


def test_reads_llava_and_pope_answer_fields(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        json.dumps({"question_id": 1, "text": "Yes, there is."})
        + "\n"
        + json.dumps({"question_id": "2", "answer": "No"})
        + "\n"
        + "\n"
        + "{broken\n"
        + json.dumps({"question_id": 3})
        + "\n"  # no text
        + json.dumps({"question_id": 1, "text": "No"})
        + "\n"  # repeat: first kept
    )
    contents = read_answers(path)
    assert contents.answers == {"1": "Yes, there is.", "2": "No"}
    assert contents.bad_lines == 2 and contents.duplicates == 1


def test_missing_file_reads_empty(tmp_path):
    assert read_answers(tmp_path / "none.jsonl").answers == {}


def test_writer_appends_and_repairs_a_torn_tail(tmp_path):
    path = tmp_path / "a.jsonl"
    with AnswerWriter(path, "model") as writer:
        writer.write([(1, "q1", "yes", {}), (2, "q2", "no", {"width": 5})])
    with path.open("a") as handle:
        handle.write('{"question_id": 3, "prompt": "q3", "te')  # a run killed mid-line
    with AnswerWriter(path, "model") as writer:  # reopening cuts the torn line
        writer.write([(3, "q3", "maybe", {})])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["question_id"] for line in lines] == [1, 2, 3]
    assert lines[1] == {"question_id": 2, "prompt": "q2", "text": "no", "model_id": "model", "width": 5}


def test_repair_of_a_single_torn_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"question_id": 1')
    assert repair_torn_tail(path) and path.read_text() == ""
    assert not repair_torn_tail(path)


def test_resume_refuses_other_prompts(tmp_path):
    path = tmp_path / "a.jsonl"
    with AnswerWriter(path, "m") as writer:
        writer.write([(1, "Is there a dog?", "yes", {})])
    existing = read_answers(path)
    check_same_prompts(existing, {"1": "Is there a dog?", "2": "new"}, path)
    with pytest.raises(UserError, match="another prompt"):
        check_same_prompts(existing, {"1": "Is there a cat?"}, path)
