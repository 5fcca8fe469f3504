"""Scoring the miniature's held-out answers against the references, with the chance level of each kind.

- attribute questions: right when the answer names the reference value and no other value of it;
- yes/no: the public POPE rule (eval.lmm.pope_rule);
- where: IoU >= 0.5 with the object's box after mapping the answer back from the padded square
  (fgclip.llava.boxes). Its "chance" is the hit rate of the best constant answer: the mean training box.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

from benchmarks.llava_miniature.questions import QUESTION_TYPES, Question, Vocabulary
from eval.lmm.pope_rule import pope_answer, score_yes_no
from fgclip.llava.boxes import box_iou, parse_box

IOU_THRESHOLD = 0.5
ATTRIBUTE_KINDS = ("colour", "texture", "size")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def is_correct(question: Question, answer: str | None, vocabulary: Vocabulary, image_size: tuple[int, int]) -> bool:
    if not answer:
        return False
    if question.kind in ATTRIBUTE_KINDS:
        named = _words(answer) & set(vocabulary.values(question.kind))
        return named == {question.answer}
    if question.kind == "yes_no":
        return pope_answer(answer) == question.answer.lower()
    parsed = parse_box(answer, *image_size)
    return parsed is not None and box_iou(parsed.box, question.bbox) >= IOU_THRESHOLD


def constant_box_hit_rate(questions: Sequence[Question], train_boxes: Sequence[Sequence[float]]) -> float:
    """Share of `where` questions a model answering the mean training box would get right."""
    wheres = [q for q in questions if q.kind == "where"]
    if not wheres or not train_boxes:
        return 0.0
    mean_box = [sum(box[i] for box in train_boxes) / len(train_boxes) for i in range(4)]
    return sum(box_iou(mean_box, q.bbox) >= IOU_THRESHOLD for q in wheres) / len(wheres)


def chance_levels(vocabulary: Vocabulary, where_chance: float) -> dict[str, float]:
    return {
        "colour": 1 / len(vocabulary.colours),
        "texture": 1 / len(vocabulary.textures),
        "size": 1 / len(vocabulary.sizes),
        "yes_no": 0.5,
        "where": where_chance,
    }


def score(
    questions: Sequence[Question],
    answers: Mapping[str, str],
    vocabulary: Vocabulary,
    image_sizes: Mapping[str, tuple[int, int]],
    chance: Mapping[str, float],
) -> dict:
    """Accuracy per question kind and overall, with the matching chance levels and counts, plus the three
    figures of the FG-CLIP claim: POPE-style yes/no metrics (F1 with "yes" as the positive class), attribute
    accuracy (colour, texture and size questions pooled) and localisation Acc@IoU>=0.5 ("where")."""
    right, total = defaultdict(int), defaultdict(int)
    for question in questions:
        total[question.kind] += 1
        right[question.kind] += is_correct(
            question, answers.get(question.question_id), vocabulary, image_sizes[question.image]
        )
    kinds = [kind for kind in QUESTION_TYPES if total[kind]]
    count = sum(total.values())
    return {
        "accuracy": sum(right.values()) / count if count else 0.0,
        "chance": sum(chance[kind] * total[kind] for kind in kinds) / count if count else 0.0,
        "per_kind": {kind: right[kind] / total[kind] for kind in kinds},
        "chance_per_kind": {kind: chance[kind] for kind in kinds},
        "questions_per_kind": {kind: total[kind] for kind in kinds},
        "answered": sum(1 for question in questions if answers.get(question.question_id)),
        "pope": score_yes_no(
            {q.question_id: q.answer.lower() for q in questions if q.kind == "yes_no"}, answers
        ).metrics(),
        "attribute_accuracy": _pooled(right, total, ATTRIBUTE_KINDS),
        "localisation_acc50": _pooled(right, total, ("where",)),
    }


def _pooled(right: Mapping[str, int], total: Mapping[str, int], kinds: Sequence[str]) -> float:
    count = sum(total[kind] for kind in kinds)
    return sum(right[kind] for kind in kinds) / count if count else 0.0
