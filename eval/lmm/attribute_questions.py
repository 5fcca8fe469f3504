"""Attribute questions from region records with hard negatives: yes/no and multiple choice.

A hard negative differs from its region caption in one attribute ("a small brown dog" / "a small black
dog"). Each region gives
- a yes/no pair: the true caption ("Is the dog brown?" -> yes) and one negative ("Is the dog black?" -> no),
  phrased about the object when the changed word can be isolated, else "Is there <caption> in the image?";
- a multiple-choice question among the caption and 3 negatives (A-D, order seeded per region).
The attribute type of a question is the lexicon category (`fgclip.attributes`, the curated lexicons the
data engine's negatives swap) of the changed word: colour, material, size, count, pattern, state, else "other".
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field

from fgclip.attributes import BOUNDARY_WORDS, LEXICONS, attribute_category, object_noun, words
from fgclip.llava.prompting import LETTER_ANSWER, SHORT_ANSWER, with_suffix

ATTRIBUTE_TYPES = (*LEXICONS, "other", "mixed")
LETTERS = "ABCD"
MC_QUESTION = "Which description matches an object in the image?"
# after one of these words an expression describes another thing ("a dog *with* a red collar", "a dog and a
# cat"); posture words are not among them here: they are the state attribute a question asks about
_PHRASE_BOUNDARY = (BOUNDARY_WORDS - {"sitting", "standing", "lying"}) | {"and"}
_ISOLATABLE_TYPES = {"colour", "material", "size", "pattern", "state"}


@dataclass(frozen=True)
class CaptionChange:
    """How a negative differs from the caption: its type, and the swapped word pair when it is one word."""

    attribute_type: str
    index: int | None = None  # word position of a single-word swap
    positive_word: str | None = None
    negative_word: str | None = None


def caption_change(caption: str, negative: str) -> CaptionChange:
    """The attribute type of a negative, from the words that differ (first lexicon hit wins)."""
    a, b = words(caption), words(negative)
    changed_a, changed_b = [], []
    for tag, a1, a2, b1, b2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            changed_a += a[a1:a2]
            changed_b += b[b1:b2]
    kind = next((attribute_category(w) for w in changed_a + changed_b if attribute_category(w)), None) or "other"
    if len(a) == len(b):
        differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if len(differing) == 1:
            i = differing[0]
            return CaptionChange(kind, i, a[i], b[i])
    return CaptionChange(kind)


def _isolated_noun(caption: str, change: CaptionChange) -> str | None:
    """The head noun that the swapped word modifies directly, or None (then the caption is used whole)."""
    if change.index is None or change.attribute_type not in _ISOLATABLE_TYPES:
        return None
    tokens = words(caption)
    if any(token in _PHRASE_BOUNDARY for token in tokens[: change.index]):
        return None  # the word describes a second object
    noun = object_noun(caption)
    if not noun:
        return None
    noun = noun.lower()
    for position in range(change.index + 1, len(tokens)):
        if tokens[position] in _PHRASE_BOUNDARY:
            return None
        if tokens[position] == noun:
            return noun
    return None


def _there_is(caption: str) -> str:
    text = caption.strip().rstrip(".")
    first = words(text)[:1]
    plural = bool(first) and attribute_category(first[0]) == "count"
    return f"{'Are' if plural else 'Is'} there {text[:1].lower() + text[1:]} in the image?"


def yes_no_pair(caption: str, negative: str) -> tuple[str, str, str]:
    """(question about the caption, question about the negative, attribute type)."""
    change = caption_change(caption, negative)
    noun = _isolated_noun(caption, change)
    if noun is not None:
        return f"Is the {noun} {change.positive_word}?", f"Is the {noun} {change.negative_word}?", change.attribute_type
    return _there_is(caption), _there_is(negative), change.attribute_type


@dataclass
class AttributeQuestion:
    """One question; `answer` is 'yes'/'no' (kind 'yes_no') or a letter A-D (kind 'multiple_choice')."""

    question_id: str
    image: str
    kind: str
    attribute_type: str
    prompt: str
    answer: str
    options: list[str] = field(default_factory=list)


def _multiple_choice_negatives(caption: str, negatives: list[str], rng: random.Random) -> tuple[list[str], str]:
    """Three negatives, preferring three of one type so the question tests one attribute; and the type."""
    by_type: dict[str, list[str]] = {}
    for negative in negatives:
        by_type.setdefault(caption_change(caption, negative).attribute_type, []).append(negative)
    full = sorted(
        (kind for kind, group in by_type.items() if len(group) >= 3 and kind != "other"),
        key=lambda kind: (-len(by_type[kind]), kind),
    )
    if full:
        return rng.sample(by_type[full[0]], 3), full[0]
    chosen = rng.sample(negatives, 3)
    kinds = {caption_change(caption, negative).attribute_type for negative in chosen}
    return chosen, kinds.pop() if len(kinds) == 1 else "mixed"


def region_questions(
    key: str, image: str, caption: str, negatives: list[str], seed: int, kinds=("yes_no", "multiple_choice")
) -> list[AttributeQuestion]:
    """The questions of one region. `key` must be unique and stable (it seeds the choices)."""
    seen = {caption.strip().lower()}
    usable = []
    for negative in negatives:
        if negative.strip().lower() not in seen:
            seen.add(negative.strip().lower())
            usable.append(negative)
    rng = random.Random(f"{seed}:{key}")
    questions = []
    if "yes_no" in kinds and usable:
        negative = rng.choice(usable)
        true_question, false_question, kind = yes_no_pair(caption, negative)
        questions += [
            AttributeQuestion(f"{key}:yes", image, "yes_no", kind, with_suffix(true_question, SHORT_ANSWER), "yes"),
            AttributeQuestion(f"{key}:no", image, "yes_no", kind, with_suffix(false_question, SHORT_ANSWER), "no"),
        ]
    if "multiple_choice" in kinds and len(usable) >= 3:
        chosen, kind = _multiple_choice_negatives(caption, usable, rng)
        options = [caption, *chosen]
        rng.shuffle(options)
        lines = [MC_QUESTION] + [f"{letter}. {option}" for letter, option in zip(LETTERS, options)]
        prompt = with_suffix("\n".join(lines), LETTER_ANSWER)
        answer = LETTERS[options.index(caption)]
        questions.append(AttributeQuestion(f"{key}:mc", image, "multiple_choice", kind, prompt, answer, options))
    return questions


_LETTER_ONLY = re.compile(r"^\W*([A-D])\W*$")
_LETTER_MARKED = re.compile(r"^\(?([A-D])[).:,]")  # "(B)", "B.", "B:", "B, ..." (a bare "A " is the article)
_LETTER_NAMED = re.compile(r"\b(?:answer|option|choice)\s*(?:is\s*)?:?\s*\(?([A-D])\b", re.I)


def parse_choice(text: str, options: list[str]) -> str | None:
    """The letter an answer picks, or None when it picks nothing (scored as wrong).

    In order: a lone or marked letter ("B", "(B)", "B. a red car"); the text of exactly one option
    ("a red car"); an answer containing exactly one option's text; "the answer is B".
    """
    stripped = text.strip()
    for pattern in (_LETTER_ONLY, _LETTER_MARKED):
        match = pattern.match(stripped)
        if match:
            return match.group(1)
    lowered = stripped.lower().rstrip(".")
    normalised = [option.strip().lower().rstrip(".") for option in options]
    exact = [LETTERS[i] for i, option in enumerate(normalised) if option == lowered]
    if len(exact) == 1:
        return exact[0]
    contained = [LETTERS[i] for i, option in enumerate(normalised) if option and option in lowered]
    if len(contained) == 1:
        return contained[0]
    match = _LETTER_NAMED.search(stripped)
    return match.group(1).upper() if match else None
