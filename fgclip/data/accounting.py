"""What a training run did with its records: seen, bad (by reason, with examples), texts cut to length, and
the rule that stops a run whose data is bad.

The rule (also in `--help` of scripts/pretrain_fgclip.py): records are drawn in a random order, so those seen
so far are a random sample of the data. The run stops only on evidence that more than `max_bad_fraction`
of the data is bad:

* after at least `min_seen` (1,000) records, when the one-sided 99.9% lower (Wilson) bound of the bad share
  is above the limit, i.e. the data is worse than the limit with 99.9% confidence;
* at the end of each pass over the data, when the bad share of the records seen, which is then the share of
  the data itself, is above the limit.

So 3 bad records among 400 with a 1% limit never stop a run, wherever they fall in the order, and 40 among
400 stop it at the end of the first pass; on a large set, 2% bad stops after about 3,000 records.
Each record is counted once: the first time the run sees it (the sampler says when), not once per epoch,
and not when it is passed over while looking for a substitute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fgclip.data.schema import BAD_RECORD_KINDS, BadRecord

MIN_SEEN_FOR_EVIDENCE = 1000
CONFIDENCE_Z = 3.09  # one-sided 99.9%


def wilson_lower_bound(bad: int, seen: int, z: float = CONFIDENCE_Z) -> float:
    """Lower end of the Wilson score interval of a binomial share (one-sided, `z` standard deviations)."""
    if seen <= 0:
        return 0.0
    share = bad / seen
    denominator = 1 + z * z / seen
    centre = share + z * z / (2 * seen)
    margin = z * math.sqrt(share * (1 - share) / seen + z * z / (4 * seen * seen))
    return max(0.0, (centre - margin) / denominator)


def should_stop(
    bad: int, seen: int, max_bad_fraction: float, whole_pass: bool, min_seen: int = MIN_SEEN_FOR_EVIDENCE
) -> bool:
    """The stop rule of the module docstring, on totals over all ranks."""
    if bad == 0 or seen == 0:
        return False
    if whole_pass:
        return bad / seen > max_bad_fraction
    return seen >= min_seen and wilson_lower_bound(bad, seen) > max_bad_fraction


@dataclass
class RecordTotals:
    """Counts summed over ranks (`RecordAccounting.vector` -> all-reduce -> `from_vector`)."""

    seen: int = 0
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    truncated_long: int = 0
    long_texts: int = 0
    truncated_short: int = 0
    short_texts: int = 0

    @property
    def bad(self) -> int:
        return sum(self.bad_by_kind.values())

    @classmethod
    def from_vector(cls, values: list[float]) -> RecordTotals:
        values = [round(v) for v in values]
        kinds = dict(zip(BAD_RECORD_KINDS, values[1 : 1 + len(BAD_RECORD_KINDS)]))
        rest = values[1 + len(BAD_RECORD_KINDS) :]
        return cls(values[0], {k: v for k, v in kinds.items() if v}, *rest)

    def describe_bad(self) -> str:
        """ "40 of 400 records are bad (10.0%): missing_image 38, malformed_json 2"."""
        reasons = ", ".join(
            f"{kind} {count}" for kind, count in sorted(self.bad_by_kind.items(), key=lambda kv: -kv[1])
        )
        share = self.bad / max(self.seen, 1)
        return f"{self.bad} of {self.seen} records are bad ({share:.1%})" + (f": {reasons}" if reasons else "")


class RecordAccounting:
    """One rank's counts; every rank adds its batches, the loop sums them over ranks to judge and report."""

    def __init__(self, max_bad_fraction: float = 0.01, keep_examples: int = 5, min_seen: int = MIN_SEEN_FOR_EVIDENCE):
        self.max_bad_fraction, self.keep_examples, self.min_seen = max_bad_fraction, keep_examples, min_seen
        self.seen = 0
        self.bad_by_kind = {kind: 0 for kind in BAD_RECORD_KINDS}
        self.examples: list[BadRecord] = []
        self.truncated_long = self.long_texts = self.truncated_short = self.short_texts = 0

    def add(
        self,
        seen: int,
        bad: list[BadRecord],
        truncated_long: int = 0,
        long_texts: int = 0,
        truncated_short: int = 0,
        short_texts: int = 0,
    ) -> None:
        self.seen += seen
        for record in bad:
            self.bad_by_kind[record.kind if record.kind in self.bad_by_kind else BAD_RECORD_KINDS[1]] += 1
        room = self.keep_examples - len(self.examples)
        if room > 0:
            self.examples.extend(bad[:room])
        self.truncated_long += truncated_long
        self.long_texts += long_texts
        self.truncated_short += truncated_short
        self.short_texts += short_texts

    def add_batch(self, batch) -> None:
        """Count a collated `Batch` (its first sightings, bad records and truncated texts)."""
        self.add(
            batch.seen,
            batch.bad,
            batch.truncated_long,
            batch.num_images,
            batch.truncated_short,
            batch.short_input_ids.shape[0],
        )

    def vector(self) -> list[float]:
        """This rank's counts as numbers to all-reduce (`RecordTotals.from_vector` reads the sum)."""
        return (
            [float(self.seen)]
            + [float(self.bad_by_kind[k]) for k in BAD_RECORD_KINDS]
            + [float(self.truncated_long), float(self.long_texts), float(self.truncated_short), float(self.short_texts)]
        )

    def local_totals(self) -> RecordTotals:
        return RecordTotals.from_vector(self.vector())

    def stop_message(self, totals: RecordTotals, whole_pass: bool, examples: list[BadRecord]) -> str | None:
        """Why the run must stop (one line with counts by reason and examples), or None to go on."""
        if not should_stop(totals.bad, totals.seen, self.max_bad_fraction, whole_pass, self.min_seen):
            return None
        evidence = (
            "after a whole pass over the data"
            if whole_pass
            else f"above it with 99.9% confidence after {totals.seen} records"
        )
        shown = "; ".join(f"{item.source}: {item.reason}" for item in examples[:3])
        return f"{totals.describe_bad()}, more than --max_bad_fraction {self.max_bad_fraction:.1%} {evidence}" + (
            f"; e.g. {shown}" if shown else ""
        )

    def summary(self, totals: RecordTotals, examples: list[BadRecord]) -> dict:
        return {
            "seen_records": totals.seen,
            "bad_records": totals.bad,
            "bad_fraction": round(totals.bad / max(totals.seen, 1), 6),
            "bad_by_reason": dict(sorted(totals.bad_by_kind.items())),
            "bad_examples": [f"{item.source}: {item.reason}" for item in examples],
            "long_captions_encoded": totals.long_texts,
            "long_captions_truncated": totals.truncated_long,
            "short_texts_encoded": totals.short_texts,
            "short_texts_truncated": totals.truncated_short,
        }

    def state_dict(self) -> dict:
        return {
            "seen": self.seen,
            "bad_by_kind": dict(self.bad_by_kind),
            "examples": [[b.source, b.reason, b.kind] for b in self.examples],
            "truncated": [self.truncated_long, self.long_texts, self.truncated_short, self.short_texts],
        }

    def load_state_dict(self, state: dict) -> None:
        self.seen = int(state["seen"])
        self.bad_by_kind = {kind: int(state["bad_by_kind"].get(kind, 0)) for kind in BAD_RECORD_KINDS}
        self.examples = [BadRecord(*example) for example in state["examples"]]
        self.truncated_long, self.long_texts, self.truncated_short, self.short_texts = state["truncated"]
