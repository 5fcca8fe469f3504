"""Attribute question building: type inference, phrasing, multiple choice and answer parsing."""

import pytest

from eval.lmm.attribute_questions import caption_change, parse_choice, region_questions, yes_no_pair


@pytest.mark.parametrize(
    "caption, negative, kind",
    [
        ("a small brown dog", "a small black dog", "colour"),
        ("a wooden table", "a metal table", "material"),
        ("a small brown dog", "a large brown dog", "size"),
        ("two white cats", "three white cats", "count"),
        ("a striped shirt", "a plaid shirt", "pattern"),
        ("an open door", "a closed door", "state"),
        ("a dog", "a brown dog", "colour"),  # an inserted attribute
        ("a dog on a sofa", "a dog on a bed", "other"),
    ],
)
def test_attribute_type_from_the_changed_word(caption, negative, kind):
    assert caption_change(caption, negative).attribute_type == kind


@pytest.mark.parametrize(
    "caption, negative, expected",
    [
        (
            "a small brown dog with a red collar",
            "a small black dog with a red collar",
            ("Is the dog brown?", "Is the dog black?"),
        ),
        ("A wooden table.", "A metal table.", ("Is the table wooden?", "Is the table metal?")),
        # the changed word belongs to the collar, not the dog: ask about the whole caption
        (
            "a small brown dog with a red collar",
            "a small brown dog with a blue collar",
            (
                "Is there a small brown dog with a red collar in the image?",
                "Is there a small brown dog with a blue collar in the image?",
            ),
        ),
        (
            "two white cats",
            "three white cats",
            ("Are there two white cats in the image?", "Are there three white cats in the image?"),
        ),
        ("a dog", "a brown dog", ("Is there a dog in the image?", "Is there a brown dog in the image?")),
    ],
)
def test_yes_no_phrasing(caption, negative, expected):
    assert yes_no_pair(caption, negative)[:2] == expected


NEGATIVES = ["a small black dog", "a small white dog", "a small grey dog", "a large brown dog", "a wooden dog"]


def test_region_questions_are_balanced_and_seeded():
    questions = region_questions("0:0", "a.jpg", "a small brown dog", NEGATIVES, seed=0)
    assert [q.kind for q in questions] == ["yes_no", "yes_no", "multiple_choice"]
    yes, no, choice = questions
    assert (yes.answer, no.answer) == ("yes", "no") and yes.attribute_type == no.attribute_type
    assert yes.prompt.endswith("\nAnswer the question using a single word or phrase.")
    # three colour negatives exist, so the multiple-choice question tests colour only
    assert choice.attribute_type == "colour"
    assert sorted(choice.options) == sorted(
        ["a small brown dog", "a small black dog", "a small white dog", "a small grey dog"]
    )
    assert choice.options["ABCD".index(choice.answer)] == "a small brown dog"
    assert "\nA. " in choice.prompt and choice.prompt.endswith(
        "Answer with the option's letter from the given choices directly."
    )
    assert region_questions("0:0", "a.jpg", "a small brown dog", NEGATIVES, seed=0) == questions
    answers = {region_questions(f"0:{i}", "a.jpg", "a small brown dog", NEGATIVES, seed=0)[2].answer for i in range(40)}
    assert answers == set("ABCD")  # the correct letter moves between regions


def test_regions_with_few_negatives():
    assert region_questions("k", "a.jpg", "a red car", [], seed=0) == []
    two = region_questions("k", "a.jpg", "a red car", ["a blue car", "A red car", "a green car"], seed=0)
    assert [q.kind for q in two] == ["yes_no", "yes_no"]  # the duplicate of the caption is dropped: 2 left


def test_mixed_multiple_choice_type():
    questions = region_questions(
        "k", "a.jpg", "a small brown dog", ["a small black dog", "a large brown dog", "a small brown cat"], seed=0
    )
    assert questions[-1].attribute_type == "mixed"


OPTIONS = ["a small dog", "a large dog", "a red dog", "a blue dog"]


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("B.", "B"),
        ("(C)", "C"),
        ("D: a blue dog", "D"),
        ("A small dog", "A"),
        ("a red dog.", "C"),
        ("It is a large dog", "B"),
        ("The answer is D", "D"),
        ("Option (B)", "B"),
        ("", None),
        ("none of them", None),
        ("a dog", None),
        ("A small dog or a large dog", None),
    ],
)
def test_parse_choice(text, letter):
    assert parse_choice(text, OPTIONS) == letter
