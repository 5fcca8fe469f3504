"""Training samples: decode the image, transform it, pick the regions and their texts; report bad records.

A bad record (malformed JSON, invalid box, empty caption, missing or unreadable image) is never fatal
and never dropped silently: the dataset returns a substitute (a usable record drawn at random with the
sample's seed, so every rank keeps an equal batch size) together with the bad record, and the trainer
counts it (`fgclip.data.accounting`) - once per record, when the sampler says the run sees it for the
first time.

Items of the official FineHARD files follow the official stage-2 loader: their short caption gets the
prefix "a photo of ", and the first four boxes are used (`region_choice="random"` draws four instead).
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
FINEHARD_SHORT_PREFIX = "a photo of "  # what the official loader puts before FineHARD's short captions
REGION_CHOICES = ("first", "random")


@dataclass
class Sample:
    """One image and its texts, ready for `collate_records`.

    pixel_values: `(3, S, S)` normalised image.
    boxes: `(N, 4)` normalised `[x1, y1, x2, y2]`, `N <= max_regions` (`(0, 4)` when regions are off).
    region_texts: the text each box is contrasted with (its caption or long caption, drawn at random).
    region_captions: each box's short expression, the positive among its hard-negative candidates.
    hard_negatives: up to K negatives per box (possibly none).
    bad: why the sampled record itself could not be used (this sample is then a substitute), or None.
    first_sighting: the run sees the sampled record for the first time (it is counted).
    """

    pixel_values: torch.Tensor
    long_caption: str
    short_caption: str
    boxes: torch.Tensor
    region_texts: list[str] = field(default_factory=list)
    region_captions: list[str] = field(default_factory=list)
    hard_negatives: list[list[str]] = field(default_factory=list)
    source: str = ""
    bad: BadRecord | None = None
    first_sighting: bool = True


class FineGrainedDataset(Dataset):
    """Map-style dataset over an indexed record source (`fgclip.data.readers`).

    Keys are `(index, sample_seed[, first_sighting])` from `EpochBatchSampler` (a plain int uses itself as
    the seed).
    """

    def __init__(
        self,
        source,
        image_size: int,
        with_regions: bool,
        max_regions: int = MAX_REGIONS_PER_IMAGE,
        num_hard_negatives: int = NUM_HARD_NEGATIVES,
        max_substitutes: int = 64,
        region_choice: str = "first",
        finehard_short_prefix: str = FINEHARD_SHORT_PREFIX,
    ):
        if region_choice not in REGION_CHOICES:
            raise ValueError(f"region_choice must be one of {REGION_CHOICES}, got {region_choice!r}")
        self.source = source
        self.transform = image_transform(image_size)
        self.with_regions = with_regions
        self.max_regions, self.num_hard_negatives = max_regions, num_hard_negatives
        self.max_substitutes = max_substitutes
        self.region_choice, self.finehard_short_prefix = region_choice, finehard_short_prefix

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, index: int, rng: random.Random) -> Sample | BadRecord:
        loaded = self.source.load(index)
        if not isinstance(loaded, LoadedRecord):
            return loaded
        try:
            image = loaded.open_image()
        except ImageError as error:
            return BadRecord(loaded.source, str(error), error.kind)
        return self._make_sample(loaded, image, rng)

    def __getitem__(self, key) -> Sample:
        if isinstance(key, tuple):
            index, seed, first = (*key, True)[:3]
        else:
            index, seed, first = int(key), int(key), True
        rng = random.Random(seed)
        loaded = self._load(index, rng)
        if isinstance(loaded, Sample):
            loaded.first_sighting = first
            return loaded
        bad = loaded
        # A substitute drawn at random (not the next index): a run of bad records, e.g. a missing image
        # folder, then costs a few draws, not a walk along it.
        for _ in range(self.max_substitutes):
            substitute = self._load(rng.randrange(len(self.source)), rng)
            if isinstance(substitute, Sample):
                substitute.bad, substitute.first_sighting = bad, first
                return substitute
        raise UserError(
            f"{self.max_substitutes} records drawn to replace the bad record {bad.source} were all "
            f"unusable: the data is (almost) all bad, e.g. {bad.source}: {bad.reason}"
        )

    def _make_sample(self, loaded: LoadedRecord, image, rng: random.Random) -> Sample:
        record = loaded.record
        regions = list(record.regions) if self.with_regions else []
        if len(regions) > self.max_regions:
            if self.region_choice == "first":
                regions = regions[: self.max_regions]
            else:
                keep = sorted(rng.sample(range(len(regions)), self.max_regions))
                regions = [regions[i] for i in keep]
        # FG-CLIP contrasts each box with its short or its long expression, chosen at random.
        texts = [rng.choice([r.caption, r.long_caption]) if r.long_caption else r.caption for r in regions]
        boxes = torch.tensor([r.bbox for r in regions], dtype=torch.float32).reshape(-1, 4)
        short_caption = record.short_caption
        if loaded.finehard and self.finehard_short_prefix:
            short_caption = self.finehard_short_prefix + short_caption
        return Sample(
            pixel_values=self.transform(image),
            long_caption=record.long_caption,
            short_caption=short_caption,
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
