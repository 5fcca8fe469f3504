"""The bad-record rule: stop on evidence only; counts by reason, once per record."""

import pytest

from fgclip.data.accounting import RecordAccounting, RecordTotals, should_stop, wilson_lower_bound
from fgclip.data.schema import BadRecord


def test_three_bad_in_400_never_stop_a_one_percent_run_wherever_they_fall():
    for seen in range(1, 401):  # checked after every record, the bad ones as early as possible
        assert not should_stop(min(3, seen), seen, 0.01, whole_pass=False)
    assert not should_stop(3, 283, 0.01, whole_pass=False)  # the case: 1.1% after 283 records
    assert not should_stop(3, 400, 0.01, whole_pass=True)  # 0.75% of the whole set


def test_forty_bad_in_400_stop_at_the_end_of_the_pass():
    assert not should_stop(40, 399, 0.01, whole_pass=False)  # fewer than 1,000 records: not yet evidence
    assert should_stop(40, 400, 0.01, whole_pass=True)


def test_on_a_large_set_evidence_stops_early_and_noise_does_not():
    assert should_stop(60, 3000, 0.01, whole_pass=False)  # 2% bad: the bound is above 1% after ~3,000 records
    assert not should_stop(14, 1000, 0.01, whole_pass=False)  # 1.4% of 1,000 is no proof of > 1%
    assert not should_stop(900, 100_000, 0.01, whole_pass=False)  # 0.9%: never
    assert wilson_lower_bound(0, 10) == 0.0 and 0 < wilson_lower_bound(5, 10) < 0.5


def test_counts_by_reason_examples_and_the_stop_line():
    accounting = RecordAccounting(max_bad_fraction=0.01, keep_examples=2)
    bad = [
        BadRecord("d.jsonl:3", "image not found: x.png", "missing_image"),
        BadRecord("d.jsonl:9", "not valid JSON", "malformed_json"),
        BadRecord("d.jsonl:12", "image not found: y.png", "missing_image"),
    ]
    accounting.add(seen=400, bad=bad + [BadRecord(f"d.jsonl:{20 + i}", "gone", "missing_image") for i in range(37)])
    totals = accounting.local_totals()
    assert totals.seen == 400 and totals.bad == 40
    assert totals.bad_by_kind == {"missing_image": 39, "malformed_json": 1}
    assert accounting.stop_message(totals, whole_pass=False, examples=accounting.examples) is None
    line = accounting.stop_message(totals, whole_pass=True, examples=accounting.examples)
    assert line.startswith(
        "40 of 400 records are bad (10.0%): missing_image 39, malformed_json 1, more than "
        "--max_bad_fraction 1.0% after a whole pass over the data"
    )
    assert "d.jsonl:3: image not found: x.png; d.jsonl:9: not valid JSON" in line and "\n" not in line
    summary = accounting.summary(totals, accounting.examples)
    assert summary["bad_records"] == 40 and summary["seen_records"] == 400
    assert summary["bad_by_reason"] == {"malformed_json": 1, "missing_image": 39}


def test_totals_add_up_over_ranks_and_survive_a_checkpoint():
    ranks = [RecordAccounting(), RecordAccounting()]
    ranks[0].add(10, [BadRecord("a:1", "x", "invalid_box")], truncated_long=1, long_texts=10)
    ranks[1].add(10, [BadRecord("b:1", "y", "unreadable_image")], truncated_short=2, short_texts=30)
    summed = [a + b for a, b in zip(ranks[0].vector(), ranks[1].vector())]
    totals = RecordTotals.from_vector(summed)
    assert (totals.seen, totals.bad, totals.truncated_long, totals.truncated_short, totals.short_texts) == (
        20,
        2,
        1,
        2,
        30,
    )
    restored = RecordAccounting()
    restored.load_state_dict(ranks[0].state_dict())
    assert restored.vector() == ranks[0].vector() and restored.examples == ranks[0].examples
    with pytest.raises(AssertionError):
        assert restored.vector() == ranks[1].vector()
