"""Rule-based hard negatives and their validation, on many hand-written expressions."""

from __future__ import annotations

import re

import pytest

from fgclip.pipeline.lexicons import LEXICONS, replacement_table, synonyms
from fgclip.pipeline.negatives import (
    RuleNegativeGenerator,
    contains_word,
    normalise_text,
    object_noun,
    validate_negatives,
)

# (expression, expected object noun)
EXPRESSIONS = [
    ("a small brown dog with a red collar", "dog"),
    ("two white cats", "cats"),
    ("the striped wooden sofa", "sofa"),
    ("a man in a red shirt", "man"),
    ("a pair of black leather shoes", "shoes"),
    ("an open window", "window"),
    ("a tall glass vase filled with yellow flowers", "vase"),
    ("three ripe bananas on a plate", "bananas"),
    ("a large metal bucket", "bucket"),
    ("the woman holding a pink umbrella", "woman"),
    ("a fluffy white cloud", "cloud"),
    ("an empty ceramic mug", "mug"),
    ("a wet black umbrella", "umbrella"),
    ("A Red Car", "Car"),
    ("a checkered flag", "flag"),
    ("a sleeping orange cat", "cat"),
    ("a cup of coffee", "cup"),
    ("the dog's blue leash", "leash"),
    ("4 green apples", "apples"),
    ("a short skirt", "skirt"),
    ("the thick wooden door", "door"),
    ("a dirty white sneaker", "sneaker"),
    ("a lit candle", "candle"),
    ("a glass", "glass"),
    ("a car", "car"),
    ("the sky", "sky"),
    ("a boy", "boy"),
    ("a group of people", "people"),
]


@pytest.mark.parametrize("expression,noun", EXPRESSIONS)
def test_object_noun(expression, noun):
    assert object_noun(expression) == noun


@pytest.mark.parametrize("expression,noun", EXPRESSIONS)
def test_generated_negatives_pass_validation(expression, noun):
    negatives, _ = RuleNegativeGenerator(count=10, seed=0).generate(expression)
    assert negatives, expression
    assert len(negatives) <= 10
    # The same rules as the LM path: noun kept, distinct, not the positive.
    assert validate_negatives(expression, negatives, noun).valid == negatives
    for negative in negatives:
        assert contains_word(negative, noun)
        assert normalise_text(negative) != normalise_text(expression)
    assert len({normalise_text(n) for n in negatives}) == len(negatives)


@pytest.mark.parametrize("expression", [e for e, _ in EXPRESSIONS if e not in ("a boy", "a group of people")])
def test_ten_negatives_for_expressions_with_something_to_change(expression):
    negatives, _ = RuleNegativeGenerator(count=10, seed=0).generate(expression)
    assert len(negatives) == 10


def test_single_swaps_change_exactly_one_word_and_never_to_a_synonym():
    expression = "a small brown dog with a red collar"
    negatives, inserted = RuleNegativeGenerator(count=10, seed=3).generate(expression)
    assert inserted == 0
    words = expression.split()
    for negative in negatives:
        changed = [(a, b) for a, b in zip(words, negative.split()) if a != b]
        assert len(negative.split()) == len(words)
        assert len(changed) == 1, negative
        old, new = changed[0]
        assert new not in synonyms(old)
    # Round-robin over the attributes: all three attribute words get changed somewhere.
    changed_words = {a for n in negatives for a, b in zip(words, n.split()) if a != b}
    assert changed_words == {"small", "brown", "red"}


def test_deterministic_by_seed():
    generator = RuleNegativeGenerator(count=10, seed=7)
    first = generator.generate("a striped wooden sofa")
    assert RuleNegativeGenerator(count=10, seed=7).generate("a striped wooden sofa") == first
    assert RuleNegativeGenerator(count=10, seed=8).generate("a striped wooden sofa") != first


def test_counts_stay_plural_and_sizes_use_antonyms():
    negatives, _ = RuleNegativeGenerator(count=10, seed=0, allow_insertions=False).generate("two dogs")
    assert len(negatives) == 10
    assert all(
        n.endswith(" dogs")
        and n.split()[0] in {"three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"}
        for n in negatives
    )
    short, _ = RuleNegativeGenerator(count=10, seed=0, allow_insertions=False).generate("a tall tree")
    assert short == ["a short tree"]  # "tall" contrasts only with "short"; no other attribute to swap


def test_articles_follow_the_new_word():
    negatives, _ = RuleNegativeGenerator(count=16, seed=0).generate("an orange cat")
    assert "a red cat" in negatives
    assert all(not re.match(r"an [^aeiou]", n) and not re.match(r"a [aeiou]", n) for n in negatives)
    back, _ = RuleNegativeGenerator(count=16, seed=0).generate("a red cat")
    assert "an orange cat" in back


def test_capitalisation_is_kept():
    negatives, _ = RuleNegativeGenerator(count=5, seed=0).generate("A Red Car")
    assert all(re.fullmatch(r"An? [A-Z][a-z-]+ Car", n) for n in negatives), negatives


def test_insertions_only_when_nothing_to_swap_and_never_colour_on_people():
    generator = RuleNegativeGenerator(count=10, seed=0)
    negatives, inserted = generator.generate("a car")
    assert inserted == 10 and all(n.endswith(" car") and len(n.split()) == 3 for n in negatives)
    people, inserted = generator.generate("a boy")
    assert sorted(people) == ["a large boy", "a small boy"] and inserted == 2
    detail, _ = generator.generate("a man in a hat")
    assert all(n.startswith(("a man in", "a small man", "a large man")) for n in detail)
    assert RuleNegativeGenerator(count=10, allow_insertions=False).generate("a car") == ([], 0)


def test_insertions_are_a_last_resort_and_colour_goes_before_material():
    negatives, inserted = RuleNegativeGenerator(count=10, seed=0).generate("a wooden chair")
    assert inserted == 0 and all(len(n.split()) == 3 for n in negatives)  # 17 material swaps come first
    many, inserted = RuleNegativeGenerator(count=30, seed=0).generate("a wooden chair")
    longer = [n for n in many if len(n.split()) == 4]
    assert inserted == len(longer) > 0
    assert all(n.endswith(" wooden chair") or n.startswith(("a small wooden", "a large wooden")) for n in longer), (
        longer
    )


@pytest.mark.parametrize(
    "candidates,reason",
    [
        (["a small brown cat"], "object_noun_changed"),
        (["a small brown dogs"], "object_noun_changed"),
        (["A small brown dog."], "same_as_positive"),
        (["", "   "], "empty"),
        (["a large dog", "A large dog"], "duplicate"),
        (["a dog " + "very " * 20 + "big"], "too_long"),
    ],
)
def test_validation_rejects(candidates, reason):
    result = validate_negatives("a small brown dog", candidates, "dog")
    assert result.rejected[reason] >= 1


def test_validation_keeps_order_and_stops_at_limit():
    candidates = ["a large brown dog", "a small black dog", "a small brown cat", "a small white dog"]
    result = validate_negatives("a small brown dog", candidates, "dog", limit=2)
    assert result.valid == ["a large brown dog", "a small black dog"]


def test_lexicon_groups_never_offer_synonyms():
    table = replacement_table()
    for word, entries in table.items():
        for _, replacements in entries:
            assert word not in replacements
            assert not set(replacements) & (synonyms(word) - {word}), word
    assert set(LEXICONS) == {"colour", "material", "size", "count", "pattern", "state"}
