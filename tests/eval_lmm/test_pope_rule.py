"""The POPE answer rule and yes/no metrics against hand-made answers."""

import pytest

from eval.lmm.pope_rule import average_metrics, normalise_label, pope_answer, score_yes_no


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", "yes"),
        ("Yes, there is a dog in the image.", "yes"),
        ("There is no dog in the image.", "no"),
        ("No", "no"),
        ("No.", "no"),
        ("no, there isn't", "no"),  # the comma is deleted, "no" stays a word
        ("It is not a dog.", "no"),
        ("Yes. There is no cat, though.", "yes"),  # only the first sentence counts
        ("There is a cat, no dog", "no"),
        ("yes, no", "no"),
        ("Yes,no", "yes"),  # commas are deleted, not replaced: "Yesno" is one word
        ("", "yes"),  # the public rule reads an empty answer as yes (counted separately as empty)
        ("Nope", "yes"),  # only the exact words no / No / not
        ("NO", "yes"),
        ("Not at all", "yes"),  # "Not" is not in the list either: the rule is kept literally
        ("Nothing like that. no", "yes"),
    ],
)
def test_pope_answer_follows_the_public_rule(text, expected):
    assert pope_answer(text) == expected


def test_labels_normalise_and_reject_others():
    assert normalise_label("Yes") == "yes"
    assert normalise_label(" no ") == "no"
    assert normalise_label(True) == "yes"
    assert normalise_label("maybe") is None
    assert normalise_label(1) is None


def test_score_counts_by_hand():
    labels = {"1": "yes", "2": "yes", "3": "yes", "4": "no", "5": "no", "6": "no", "7": "yes", "8": "no"}
    answers = {
        "1": "Yes, there is a dog.",  # TP
        "2": "There is no dog in the image.",  # FN
        "3": "",  # empty -> yes -> TP
        "4": "No",  # TN
        "5": "Yes, a cat, a bird",  # FP
        "6": "I do not see one.",  # TN
        # 7 (yes) and 8 (no) are missing: scored as wrong -> FN and FP
        "99": "Yes",  # an answer to no question is ignored
    }
    score = score_yes_no(labels, answers)
    assert (score.tp, score.fp, score.tn, score.fn) == (2, 2, 2, 2)
    assert score.num_questions == 8 and score.num_missing == 2 and score.num_empty == 1
    assert score.accuracy == pytest.approx(4 / 8)
    assert score.precision == pytest.approx(2 / 4)
    assert score.recall == pytest.approx(2 / 4)
    assert score.f1 == pytest.approx(0.5)
    assert score.yes_ratio == pytest.approx(3 / 8)  # three real yes answers; missing ones are not yes
    metrics = score.metrics()
    assert metrics["num_missing"] == 2 and metrics["f1"] == pytest.approx(0.5)


def test_score_matches_pope_script_without_missing_answers():
    labels = {str(i): ("yes" if i < 6 else "no") for i in range(10)}
    answers = {str(i): ("Yes" if i in (0, 1, 2, 3, 6) else "No") for i in range(10)}
    score = score_yes_no(labels, answers)
    # TP=4 (0-3), FN=2 (4, 5), FP=1 (6), TN=3 (7-9)
    assert (score.tp, score.fn, score.fp, score.tn) == (4, 2, 1, 3)
    assert score.precision == pytest.approx(4 / 5)
    assert score.recall == pytest.approx(4 / 6)
    assert score.f1 == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    assert score.yes_ratio == pytest.approx(0.5)


def test_no_yes_predictions_give_zero_precision_not_a_crash():
    score = score_yes_no({"1": "yes", "2": "no"}, {"1": "No", "2": "No"})
    assert score.precision == 0.0 and score.f1 == 0.0 and score.accuracy == 0.5


def test_average_is_unweighted_over_splits():
    splits = {"random": {"f1": 0.9, "accuracy": 0.8}, "popular": {"f1": 0.7, "accuracy": 0.6}}
    assert average_metrics(splits, ("f1", "accuracy")) == pytest.approx({"f1": 0.8, "accuracy": 0.7})
