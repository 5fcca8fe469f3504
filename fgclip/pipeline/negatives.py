"""Hard negatives that change attributes only: the rule-based generator and the validation rules.

A hard negative of "a small brown dog" is a caption of the same object noun with one attribute changed
("a small black dog", "a large brown dog"). The generator swaps words for contrasting words of the
curated lexicons (`fgclip.attributes`); it is deterministic for a given seed and expression, needs
no model, and is the fallback whenever an LM's output fails `validate_negatives`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from fgclip.attributes import (
    BOUNDARY_WORDS,
    FUNCTION_WORDS,
    WORD,
    attribute_category,
    object_noun,
    replacement_table,
    synonyms,
)
from fgclip.pipeline.lexicons import INSERTABLE

_PEOPLE = set(
    (
        "man men woman women person people boy boys girl girls child children kid kids baby babies lady "
        "ladies guy guys gentleman adult adults teenager teenagers student students player players worker "
        "workers friend friends family couple crowd skier surfer rider skateboarder toddler infant"
    ).split()
)
_AN_EXCEPTIONS_A = ("uni", "use", "usu", "eu", "one", "once", "ur")  # consonant sound despite a vowel
_AN_EXCEPTIONS_AN = ("hour", "honest", "honou", "heir")  # vowel sound despite the h


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: the form compared for equality."""
    return " ".join(text.lower().strip().strip(".,;:!?\"'").split())


@dataclass
class ValidationResult:
    valid: list[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def contains_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9-]){re.escape(word)}(?![A-Za-z0-9-])", text, flags=re.IGNORECASE) is not None


def validate_negatives(
    positive: str, candidates: list[str], noun: str | None, limit: int | None = None
) -> ValidationResult:
    """Keep the candidates that are usable hard negatives of `positive`, in order.

    Rules: not empty; the object noun kept exactly (as a whole word, same form); not equal to the
    positive; no duplicates; not a ramble (at most twice the positive's words plus six).
    """
    result = ValidationResult()
    seen = {normalise_text(positive)}
    max_words = 2 * len(positive.split()) + 6
    for candidate in candidates:
        text = " ".join(str(candidate).split())
        normal = normalise_text(text)
        if not normal:
            reason = "empty"
        elif noun and not contains_word(text, noun):
            reason = "object_noun_changed"
        elif normal == normalise_text(positive):
            reason = "same_as_positive"
        elif normal in seen:
            reason = "duplicate"
        elif len(text.split()) > max_words:
            reason = "too_long"
        else:
            seen.add(normal)
            result.valid.append(text.strip().rstrip("."))
            if limit is not None and len(result.valid) >= limit:
                break
            continue
        result.rejected[reason] += 1
    return result


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _article_for(word: str) -> str:
    lowered = word.lower()
    if lowered.startswith(_AN_EXCEPTIONS_AN):
        return "an"
    if lowered.startswith(_AN_EXCEPTIONS_A):
        return "a"
    return "an" if lowered[:1] in "aeiou" or lowered[:1] in "8" or lowered in ("11", "18") else "a"


def _fix_article(text: str, position: int) -> str:
    """Make an "a"/"an" that directly precedes the word at `position` agree with it."""
    before = text[:position]
    match = re.search(r"\b(a|an|A|An|AN)(\s+)$", before)
    if not match:
        return text
    next_word = WORD.match(text, position)
    if not next_word:
        return text
    article = _match_case(match.group(1), _article_for(next_word.group(0)))
    return before[: match.start(1)] + article + match.group(2) + text[position:]


@dataclass
class _Slot:
    start: int
    end: int
    word: str
    replacements: list[str]


def _apply(expression: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace spans (start, end, new) right to left so earlier offsets stay valid, fixing articles."""
    text = expression
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
        text = _fix_article(text, start)
    return text


class RuleNegativeGenerator:
    """Deterministic attribute-swap negatives.

    Order of preference: single swaps (one attribute changed), round-robin over the attribute words so
    several attributes get used; then double swaps; then, for expressions with nothing to swap and
    `allow_insertions`, an inserted colour/size/material/pattern word before the noun.
    """

    def __init__(self, count: int = 10, seed: int = 0, allow_insertions: bool = True):
        self.count = count
        self.seed = seed
        self.allow_insertions = allow_insertions

    def _rng(self, expression: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}\0{expression}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _slots(self, expression: str, noun: str | None, rng: random.Random) -> list[_Slot]:
        table = replacement_table()
        slots = []
        for match in WORD.finditer(expression):
            word = match.group(0)
            if noun and word.lower() == noun.lower():
                continue
            entry = table.get(word.lower())
            if not entry:
                continue
            replacements = [r for _, words in entry for r in words]
            rng.shuffle(replacements)
            slots.append(_Slot(match.start(), match.end(), word, list(dict.fromkeys(replacements))))
        return slots

    def candidates(self, expression: str, noun: str | None = None) -> tuple[list[str], int]:
        """All candidate negatives in preference order, and how many of them are insertions."""
        noun = noun or object_noun(expression)
        rng = self._rng(expression)
        slots = self._slots(expression, noun, rng)
        singles: list[str] = []
        for round_index in range(max((len(s.replacements) for s in slots), default=0)):
            for slot in slots:
                if round_index < len(slot.replacements):
                    new = _match_case(slot.word, slot.replacements[round_index])
                    singles.append(_apply(expression, [(slot.start, slot.end, new)]))
        doubles: list[str] = []
        if len(singles) < 4 * self.count:
            for i, first in enumerate(slots):
                for second in slots[i + 1 :]:
                    for a in first.replacements[:4]:
                        for b in second.replacements[:4]:
                            doubles.append(
                                _apply(
                                    expression,
                                    [
                                        (first.start, first.end, _match_case(first.word, a)),
                                        (second.start, second.end, _match_case(second.word, b)),
                                    ],
                                )
                            )
            rng.shuffle(doubles)
        insertions: list[str] = []
        if self.allow_insertions and noun and len(singles) + len(doubles) < self.count:
            insertions = self._insertions(expression, noun, rng)
        return singles + doubles + insertions, len(insertions)

    def _insertions(self, expression: str, noun: str, rng: random.Random) -> list[str]:
        """Colour and size words inserted where English puts them: size after the determiner or
        count, colour right before a noun (before a material word: "a red wooden chair").

        Targets are the object noun and, when the expression goes on ("a man in a hat"), its last
        noun. People never get a colour inserted: "a red man" is no attribute change one can see.
        """
        words = list(WORD.finditer(expression))
        lowered = [m.group(0).lower() for m in words]
        targets = [i for i, w in enumerate(lowered) if w == noun.lower()][:1]
        if not targets:
            return []
        last = len(words) - 1
        if last > targets[0] and any(w in BOUNDARY_WORDS for w in lowered[targets[0] : last]):
            if lowered[last] not in FUNCTION_WORDS and attribute_category(lowered[last]) is None:
                targets.append(last)
        present = set()
        for word in lowered:
            present |= synonyms(word)
        has_size = any(attribute_category(w) == "size" for w in lowered)
        choices = []
        for target in targets:
            colour_at = words[target].start()
            index = target - 1
            while index >= 0 and attribute_category(lowered[index]) == "material":
                colour_at = words[index].start()
                index -= 1
            size_at = words[0].start()
            for index in range(target - 1, -1, -1):
                if lowered[index] in FUNCTION_WORDS or attribute_category(lowered[index]) == "count":
                    size_at = words[index + 1].start()
                    break
                if lowered[index] in BOUNDARY_WORDS:
                    size_at = words[index + 1].start()
                    break
            if lowered[target] not in _PEOPLE:
                choices += [(colour_at, w) for w in INSERTABLE["colour"] if w not in present]
            if not has_size:
                choices += [(size_at, w) for w in INSERTABLE["size"]]
        rng.shuffle(choices)
        return [_apply(expression, [(position, position, word + " ")]) for position, word in choices]

    def generate(self, expression: str, noun: str | None = None) -> tuple[list[str], int]:
        """Up to `count` validated negatives of `expression`, and how many of them were insertions."""
        noun = noun or object_noun(expression)
        candidates, num_insertions = self.candidates(expression, noun)
        valid = validate_negatives(expression, candidates, noun, limit=self.count).valid
        inserted_forms = {normalise_text(c) for c in candidates[len(candidates) - num_insertions :]}
        return valid, sum(normalise_text(v) in inserted_forms for v in valid)
