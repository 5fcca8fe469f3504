"""The public POPE answer rule and the yes/no metrics: the one place for both.

Rule (POPE's evaluate.py, also used by LLaVA-1.5): keep the text before the first ".", delete commas,
split on single spaces; the answer is "no" when one of the words is exactly `no`, `No` or `not`,
otherwise "yes". The rule is kept literally (an empty answer and "Nope!" are "yes") so that our numbers
are comparable with published ones; callers count empty answers separately so they stay visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

NEGATIVE_WORDS = ("no", "No", "not")


def pope_answer(text: str) -> str:
    """'yes' or 'no' for a raw model answer, by the public POPE rule."""
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if any(word in NEGATIVE_WORDS for word in words) else "yes"


def normalise_label(label) -> str | None:
    """A ground-truth label as 'yes'/'no', or None when it is neither."""
    if isinstance(label, bool):
        return "yes" if label else "no"
    if isinstance(label, str) and label.strip().lower() in ("yes", "no"):
        return label.strip().lower()
    return None


@dataclass
class YesNoScore:
    """Confusion counts and metrics with "yes" as the positive class (metrics are fractions).

    A question without an answer counts as wrong: a missing answer to a "yes" question is a false
    negative, to a "no" question a false positive. `yes_ratio` is the share of all questions that were
    answered "yes" (missing answers are not yes answers). With no missing answers every number equals
    the public POPE script's.
    """

    num_questions: int
    num_missing: int
    num_empty: int
    tp: int
    fp: int
    tn: int
    fn: int
    num_yes_answers: int

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.num_questions if self.num_questions else 0.0

    @property
    def precision(self) -> float:
        # 0 when nothing was predicted "yes": precision is undefined there, and 0 never flatters a model
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def yes_ratio(self) -> float:
        return self.num_yes_answers / self.num_questions if self.num_questions else 0.0

    def metrics(self) -> dict:
        """The five metrics and the counts, as a flat JSON-ready dict."""
        return {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "yes_ratio": self.yes_ratio,
            **asdict(self),
        }


def score_yes_no(labels: Mapping[str, str], answers: Mapping[str, str]) -> YesNoScore:
    """Score raw answers against 'yes'/'no' labels, both keyed by question id.

    labels: question id -> 'yes' | 'no' (every question, answered or not).
    answers: question id -> raw model answer text; ids not in `labels` are ignored by this function.
    """
    tp = fp = tn = fn = missing = empty = yes_answers = 0
    for question_id, label in labels.items():
        text = answers.get(question_id)
        if text is None:
            missing += 1
            if label == "yes":
                fn += 1
            else:
                fp += 1
            continue
        if not text.strip():
            empty += 1
        predicted = pope_answer(text)
        yes_answers += predicted == "yes"
        if predicted == "yes":
            tp, fp = (tp + 1, fp) if label == "yes" else (tp, fp + 1)
        else:
            tn, fn = (tn + 1, fn) if label == "no" else (tn, fn + 1)
    return YesNoScore(len(labels), missing, empty, tp, fp, tn, fn, yes_answers)


def average_metrics(
    per_split: Mapping[str, Mapping[str, float]], names=("accuracy", "precision", "recall", "f1", "yes_ratio")
) -> dict:
    """Unweighted mean of each metric over splits (how POPE averages are reported)."""
    if not per_split:
        return {name: 0.0 for name in names}
    return {name: sum(split[name] for split in per_split.values()) / len(per_split) for name in names}
