"""How much of the input a metric covers: the note results.json carries when items were skipped.

A benchmark never reports a silent zero: no scorable item at all is an error, and a score computed on
fewer items than the file holds says how many and why.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from eval.common.cli import EvalError


def skipped_reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """The `skipped_<reason>` entries of a counts mapping, as reason -> count."""
    return {key.removeprefix("skipped_"): value for key, value in counts.items() if key.startswith("skipped_")}


def coverage(total: int, scored: int, skipped: Mapping[str, int], unit: str) -> dict:
    """`{"complete": bool, "note": str}` for results.json; raises `EvalError` when nothing was scored.

    skipped: reason -> count (zero counts are left out of the note).
    """
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.items() if count)
    if scored == 0:
        raise EvalError(f"no {unit} could be scored out of {total}" + (f" ({reasons})" if reasons else ""))
    if scored >= total:
        return {"complete": True, "note": f"all {total} {unit} scored"}
    note = f"scored {scored} of {total} {unit}" + (f"; skipped: {reasons}" if reasons else "")
    print(f"warning: {note}", file=sys.stderr)
    return {"complete": False, "note": note}
