"""How much of the input a score covers: the `complete` flag, the note and the counts results.json carries.

A benchmark never reports a silent zero or a silent undercount: no scorable item at all is an error; a
score computed on fewer items than were given says how many of how many and why (counts by reason), and
`--strict` turns any skip into exit code 2 (after the results are written, so the partial numbers are
still there to read). Two things that are not skips are reported too, because they change what a number
means: records that repeat an earlier one exactly (every evaluation scores them once) and texts longer than
the model's token window (77, or 248 on the long path), which the tokenizer cuts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.errors import UserError


def skipped_reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """The non-zero `skipped_<reason>` entries of a counts mapping, as reason -> count."""
    return {
        key.removeprefix("skipped_"): value for key, value in counts.items() if key.startswith("skipped_") and value
    }


@dataclass
class Coverage:
    """What was given, what was scored and why the rest was not.

    given: the distinct items the input holds (duplicates of an earlier item not included: they are
        scored once and counted in `duplicates`); scored: those that entered the metric.
    skipped: reason -> count for the items that did not (zero counts are dropped).
    truncated: token limit -> number of distinct texts cut to it.
    not_read: items past the user's --limit, and the word for them; not part of the given set (the user
        asked for the first N), so they do not make a result incomplete, but the note says so.
    """

    unit: str
    given: int
    scored: int
    skipped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    truncated: dict[int, int] = field(default_factory=dict)
    not_read: int = 0
    not_read_unit: str = "items"

    def __post_init__(self) -> None:
        self.skipped = {reason: count for reason, count in self.skipped.items() if count}
        self.truncated = {limit: count for limit, count in self.truncated.items() if count}
        if self.scored == 0:
            reasons = ", ".join(f"{reason} {count}" for reason, count in self.skipped.items())
            detail = f" ({reasons})" if reasons else ""
            raise UserError(f"no {self.unit} could be scored out of {self.given}{detail}")

    @property
    def complete(self) -> bool:
        return self.scored >= self.given and not self.skipped

    @property
    def summary(self) -> str:
        """'all 17 regions' or '14 of 17 regions', for the command's last line."""
        return f"all {self.given} {self.unit}" if self.complete else f"{self.scored} of {self.given} {self.unit}"

    @property
    def note(self) -> str:
        if self.complete:
            note = f"all {self.given} {self.unit} scored"
        else:
            note = f"scored {self.scored} of {self.given} {self.unit}"
            if self.skipped:
                note += "; skipped: " + ", ".join(f"{reason} {count}" for reason, count in self.skipped.items())
        if self.not_read:
            note += f" (--limit: {self.not_read} more {self.not_read_unit} not read)"
        if self.duplicates:
            note += f"; {self.duplicates} duplicates scored once"
        for limit, count in sorted(self.truncated.items()):
            note += f"; {count} texts longer than {limit} tokens truncated"
        return note

    def as_json(self) -> dict:
        """`complete` and `note` (top level of results.json) and the numbers behind them (`coverage`)."""
        return {
            "complete": self.complete,
            "note": self.note,
            "coverage": {
                "unit": self.unit,
                "given": self.given,
                "scored": self.scored,
                "skipped": self.skipped,
                "not_read_limit": self.not_read,
                "duplicates_scored_once": self.duplicates,
                "truncated_texts": {str(limit): count for limit, count in self.truncated.items()},
            },
        }

    def warn(self) -> None:
        """A stderr warning when something was skipped, duplicated or truncated."""
        if not self.complete or self.duplicates or self.truncated:
            print(f"warning: {self.note}", file=sys.stderr)

    def enforce(self, strict: bool, results: Path | str) -> None:
        """With --strict, any skip is an error (exit 2); call after the results are written."""
        if strict and not self.complete:
            raise UserError(f"--strict: {self.note} (partial results in {results})")
