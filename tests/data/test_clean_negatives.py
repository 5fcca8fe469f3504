"""fgclip.data.schema.clean_negatives: the one rule for which hard negatives of a region are usable."""

from __future__ import annotations

from collections import Counter

from fgclip.data.schema import clean_negatives


def test_negatives_are_stripped_once_each_and_never_the_caption():
    dropped = Counter()
    kept = clean_negatives(" a red car ", ["a blue car", " a red car", "", "a blue car ", "a green car", "  "], dropped)
    assert kept == ["a blue car", "a green car"]
    assert dropped == {"equal_to_positive": 1, "repeated": 1, "empty": 2}


def test_order_is_kept_and_counting_is_optional():
    assert clean_negatives("x", ["c", "b", "a", "b"]) == ["c", "b", "a"]
    assert clean_negatives("x", []) == []
