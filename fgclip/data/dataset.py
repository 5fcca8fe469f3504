"""Training samples: decode the image, transform it, pick the regions and their texts; count bad records.

A bad record (malformed JSON, invalid box, empty caption, missing or unreadable image) is never fatal
and never dropped silently: the dataset reports it with the sample it loaded instead (the next usable
record of the index), so every rank keeps an equal batch size, and the trainer counts it in a
`BadRecordCounter`, which stops the run when the share of bad records passes `--max_bad_fraction`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from fgclip.data.readers import ImageError, LoadedRecord
from fgclip.data.schema import BadRecord
from fgclip.errors import UserError
from fgclip.transforms import image_transform

MAX_REGIONS_PER_IMAGE = 4  # FG-CLIP's stage 2 uses up to 4 boxes per image
NUM_HARD_NEGATIVES = 10


class DataError(UserError, RuntimeError):
    """The data cannot be trained on (too many bad records); the message names examples."""


@dataclass
class Sample:
    """One image and its texts, ready for `collate_records`.

    pixel_values: `(3, S, S)` normalised image.
    boxes: `(N, 4)` normalised `[x1, y1, x2, y2]`, `N <= max_regions` (`(0, 4)` when regions are off).
    region_texts: the text each box is contrasted with (its caption or long caption, drawn at random).
    region_captions: each box's short expression, the positive among its hard-negative candidates.
    hard_negatives: up to K negatives per box (possibly none).
    """

    pixel_values: torch.Tensor
    long_caption: str
    short_caption: str
    boxes: torch.Tensor
    region_texts: list[str] = field(default_factory=list)
    region_captions: list[str] = field(default_factory=list)
    hard_negatives: list[list[str]] = field(default_factory=list)
    source: str = ""
    skipped: list[BadRecord] = field(default_factory=list)  # bad records passed over to load this one


class FineGrainedDataset(Dataset):
    """Map-style dataset over an indexed record source (`fgclip.data.readers`).

    Keys are `(index, sample_seed)` pairs from `EpochBatchSampler` (a plain int uses itself as the seed).
    """

    def __init__(self, source, image_size: int, with_regions: bool, max_regions: int = MAX_REGIONS_PER_IMAGE,
                 num_hard_negatives: int = NUM_HARD_NEGATIVES, max_substitutes: int = 32):
        self.source = source
        self.transform = image_transform(image_size)
        self.with_regions = with_regions
        self.max_regions, self.num_hard_negatives = max_regions, num_hard_negatives
        self.max_substitutes = max_substitutes

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key) -> Sample:
        index, seed = key if isinstance(key, tuple) else (int(key), int(key))
        skipped: list[BadRecord] = []
        for attempt in range(self.max_substitutes + 1):
            position = (index + attempt) % len(self.source)
            loaded = self.source.load(position)
            if isinstance(loaded, LoadedRecord):
                try:
                    image = loaded.open_image()
                except ImageError as error:
                    loaded = BadRecord(loaded.source, str(error))
                else:
                    sample = self._make_sample(loaded, image, random.Random(seed))
                    sample.skipped = skipped
                    return sample
            skipped.append(loaded)
        examples = "; ".join(f"{bad.source}: {bad.reason}" for bad in skipped[:3])
        raise DataError(f"{len(skipped)} records in a row from index {index} are unusable ({examples})")

    def _make_sample(self, loaded: LoadedRecord, image, rng: random.Random) -> Sample:
        record = loaded.record
        regions = list(record.regions) if self.with_regions else []
        if len(regions) > self.max_regions:
            keep = sorted(rng.sample(range(len(regions)), self.max_regions))
            regions = [regions[i] for i in keep]
        # FG-CLIP contrasts each box with its short or its long expression, chosen at random.
        texts = [rng.choice([r.caption, r.long_caption]) if r.long_caption else r.caption for r in regions]
        boxes = torch.tensor([r.bbox for r in regions], dtype=torch.float32).reshape(-1, 4)
        return Sample(
            pixel_values=self.transform(image),
            long_caption=record.long_caption,
            short_caption=record.short_caption,
            boxes=boxes,
            region_texts=texts,
            region_captions=[r.caption for r in regions],
            hard_negatives=[self._negatives(r) for r in regions],
            source=loaded.source,
        )

    def _negatives(self, region) -> list[str]:
        """Up to K distinct negatives, never the region's own caption (that would be a second positive)."""
        negatives = [n for n in dict.fromkeys(region.hard_negatives) if n != region.caption]
        return negatives[: self.num_hard_negatives]


class BadRecordCounter:
    """Counts usable and bad records seen; `check` raises `DataError` above `max_bad_fraction`.

    The share is judged once `min_seen` records have been seen (or at the end of the run), so one bad
    record among the first few does not stop a large run.
    """

    def __init__(self, max_bad_fraction: float = 0.01, min_seen: int = 200, keep_examples: int = 5):
        self.max_bad_fraction, self.min_seen, self.keep_examples = max_bad_fraction, min_seen, keep_examples
        self.good = 0
        self.bad = 0
        self.examples: list[BadRecord] = []

    def add(self, good: int, bad: list[BadRecord]) -> None:
        self.good += good
        self.bad += len(bad)
        room = self.keep_examples - len(self.examples)
        if room > 0:
            self.examples.extend(bad[:room])

    @staticmethod
    def fraction_of(good: int, bad: int) -> float:
        return bad / max(good + bad, 1)

    def check(self, good: int | None = None, bad: int | None = None, final: bool = False) -> None:
        """Raise `DataError` if too many records are bad; `good`/`bad` may be totals over all ranks."""
        good = self.good if good is None else good
        bad = self.bad if bad is None else bad
        if bad == 0 or (good + bad < self.min_seen and not final):
            return
        share = self.fraction_of(good, bad)
        if share > self.max_bad_fraction:
            examples = "; ".join(f"{item.source}: {item.reason}" for item in self.examples[:3])
            raise DataError(
                f"{bad} of {good + bad} records are bad ({share:.1%} > --max_bad_fraction "
                f"{self.max_bad_fraction:.1%}), e.g. {examples}"
            )

    def summary(self) -> dict:
        return {
            "bad_records": self.bad,
            "seen_records": self.good + self.bad,
            "bad_fraction": round(self.fraction_of(self.good, self.bad), 6),
            "bad_examples": [f"{item.source}: {item.reason}" for item in self.examples],
        }

    def state_dict(self) -> dict:
        return {"good": self.good, "bad": self.bad, "examples": [[b.source, b.reason] for b in self.examples]}

    def load_state_dict(self, state: dict) -> None:
        self.good, self.bad = int(state["good"]), int(state["bad"])
        self.examples = [BadRecord(source, reason) for source, reason in state["examples"]]
