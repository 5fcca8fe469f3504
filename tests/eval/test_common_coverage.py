"""eval.common.coverage: the complete flag, the note, the no-silent-zero rule and --strict."""

from __future__ import annotations

import pytest

from eval.common.coverage import Coverage, skipped_reasons
from fgclip.errors import UserError


def test_complete_only_when_every_given_item_was_scored(capsys):
    whole = Coverage("items", 5, 5)
    assert whole.complete and whole.note == "all 5 items scored" and whole.summary == "all 5 items"
    whole.warn()
    assert capsys.readouterr().err == ""
    partial = Coverage("items", 5, 3, {"missing_image": 2, "crowd": 0})
    assert not partial.complete and partial.summary == "3 of 5 items"
    assert partial.note == "scored 3 of 5 items; skipped: missing_image 2"
    partial.warn()
    assert "warning: scored 3 of 5 items" in capsys.readouterr().err
    # a skip is never hidden by a count that happens to add up
    assert not Coverage("items", 5, 5, {"bad_lines": 1}).complete


def test_duplicates_truncation_and_limits_are_said_but_do_not_make_it_partial():
    cover = Coverage("regions", 4, 4, duplicates=2, truncated={77: 3, 248: 0}, not_read=10, not_read_unit="items")
    assert cover.complete
    assert cover.note == (
        "all 4 regions scored (--limit: 10 more items not read); 2 duplicates scored once; "
        "3 texts longer than 77 tokens truncated"
    )
    assert cover.as_json()["coverage"] == {
        "unit": "regions",
        "given": 4,
        "scored": 4,
        "skipped": {},
        "not_read_limit": 10,
        "duplicates_scored_once": 2,
        "truncated_texts": {"77": 3},
    }


def test_nothing_scored_is_an_error_and_strict_turns_a_skip_into_one(tmp_path):
    with pytest.raises(UserError, match="no items could be scored out of 4 \\(missing_image 4\\)"):
        Coverage("items", 4, 0, {"missing_image": 4})
    Coverage("items", 2, 2).enforce(True, tmp_path / "results.json")
    Coverage("items", 2, 1, {"bad": 1}).enforce(False, tmp_path / "results.json")
    with pytest.raises(UserError, match="--strict: scored 1 of 2 items; skipped: bad 1 \\(partial results in"):
        Coverage("items", 2, 1, {"bad": 1}).enforce(True, tmp_path / "results.json")


def test_skipped_reasons_reads_the_counts():
    assert skipped_reasons({"items": 3, "skipped_bad_box": 2, "skipped_crowd": 0}) == {"bad_box": 2}
