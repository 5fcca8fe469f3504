"""FineHARD-like training batches, built through the trainer's own dataset and collator.

Records have FineHARD's shape: a long caption (100-220 words, CogVLM2-style), a short caption, 4 boxes,
each with a short referring expression, a longer one and 10 hard negatives that swap one word of the
expression (so, as in FineHARD, almost every text of a batch is distinct and the de-duplication lever
is not flattered). Words are common English words, one CLIP BPE token each, so a text of n words is
n + 2 tokens. Images are small random pictures held in memory as PNG bytes; `FineGrainedDataset` decodes,
transforms and picks regions exactly as in training, and `collate_records` builds the `Batch`.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fgclip.data.collate import Batch, collate_records
from fgclip.data.dataset import FineGrainedDataset, Sample
from fgclip.data.readers import LoadedRecord
from fgclip.data.schema import Record, Region
from fgclip.tokenizer import FGCLIPTokenizer

WORDS = tuple(
    """a the man woman child dog cat car bus tree house street table chair window door sky cloud water
    river boat bird horse cow sheep field grass flower road sign light pole wall floor roof shirt jacket
    hat shoe bag cup plate bowl bottle glass book phone screen picture lamp bed sofa pillow blanket
    red blue green yellow black white brown gray orange purple pink dark bright small large tall short
    long round square wooden metal plastic old new clean dirty wet dry empty full open closed left right
    top bottom front back near far middle side corner edge under over on in with and of at next behind
    standing sitting walking running holding wearing looking carrying riding parked lying hanging
    two three four several many some other one each both""".split()
)


@dataclass
class TextLengths:
    """Words per text, as (fewest, most); a text of n words is n + 2 CLIP tokens."""

    long_caption: tuple[int, int] = (100, 220)  # CogVLM2-style descriptions, some near the 248-token cap
    short_caption: tuple[int, int] = (8, 20)
    region_caption: tuple[int, int] = (2, 6)  # spaCy noun phrases: "the red car", "a man with a hat"
    region_long_caption: tuple[int, int] = (8, 20)


@dataclass
class Workload:
    """FineHARD-like load: 4 regions per image, 10 hard negatives per region."""

    regions_per_image: int = 4
    negatives_per_region: int = 10
    lengths: TextLengths = field(default_factory=TextLengths)


def _words(rng: random.Random, bounds: tuple[int, int]) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(*bounds))]


def _negatives(rng: random.Random, words: list[str], count: int) -> list[str]:
    """`count` distinct texts that differ from `words` in exactly one word."""
    caption, negatives = " ".join(words), []
    while len(negatives) < count:
        swapped = list(words)
        swapped[rng.randrange(len(words))] = rng.choice(WORDS)
        text = " ".join(swapped)
        if text != caption and text not in negatives:
            negatives.append(text)
    return negatives


def _box(rng: random.Random) -> list[float]:
    x1, y1 = rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.6)
    return [x1, y1, min(1.0, x1 + rng.uniform(0.1, 0.4)), min(1.0, y1 + rng.uniform(0.1, 0.4))]


def make_records(count: int, seed: int = 0, workload: Workload | None = None) -> list[Record]:
    """`count` FineHARD-like records (deterministic in `seed`); images are named, not written."""
    workload = workload or Workload()
    rng = random.Random(seed)
    lengths = workload.lengths
    records = []
    for index in range(count):
        regions = []
        for _ in range(workload.regions_per_image):
            words = _words(rng, lengths.region_caption)
            regions.append(
                Region(
                    bbox=_box(rng),
                    caption=" ".join(words),
                    long_caption=" ".join(_words(rng, lengths.region_long_caption)),
                    hard_negatives=_negatives(rng, words, workload.negatives_per_region),
                )
            )
        records.append(
            Record(
                image=f"{index:06d}.png",
                long_caption=" ".join(_words(rng, lengths.long_caption)),
                short_caption=" ".join(_words(rng, lengths.short_caption)),
                regions=regions,
            )
        )
    return records


def random_png(rng: np.random.Generator, size: int) -> bytes:
    """A smooth random RGB picture of `size` x `size` pixels, PNG-encoded."""
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class InMemorySource:
    """An indexed record source (the interface of `fgclip.data.readers`) over records held in memory,
    with each image as PNG bytes, so the dataset's decode/transform path runs without disk I/O."""

    def __init__(self, records: list[Record], image_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.records = records
        self.images = [random_png(rng, image_size) for _ in records]

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> LoadedRecord:
        return LoadedRecord(self.records[index], f"memory:{index}", image_bytes=self.images[index])


def make_samples(records: list[Record], image_size: int, with_regions: bool, seed: int = 0) -> list[Sample]:
    """The trainer's samples for `records` (decoded, transformed, regions and texts picked)."""
    dataset = FineGrainedDataset(InMemorySource(records, image_size, seed), image_size, with_regions=with_regions)
    return [dataset[(index, seed + index)] for index in range(len(dataset))]


def make_batch(samples: list[Sample], with_regions: bool, tokenizer: FGCLIPTokenizer | None = None) -> Batch:
    """`collate_records` of the trainer: texts de-duplicated and padded to the longest of the batch."""
    return collate_records(samples, tokenizer or FGCLIPTokenizer(), with_regions)


def text_stats(batch: Batch) -> dict:
    """Sizes of a batch's text tensors (what the text tower will process)."""
    short_lengths = batch.short_attention_mask.sum(dim=1).float()
    stats = {
        "images": batch.num_images,
        "regions": batch.num_regions,
        "short_texts": int(batch.short_input_ids.shape[0]),
        "short_padded_length": int(batch.short_input_ids.shape[1]),
        "short_mean_length": round(float(short_lengths.mean()), 2),
    }
    if batch.long_input_ids is not None:
        long_lengths = batch.long_attention_mask.sum(dim=1).float()
        stats.update(
            long_padded_length=int(batch.long_input_ids.shape[1]), long_mean_length=round(float(long_lengths.mean()), 2)
        )
    if batch.hard_index is not None:
        uses = batch.num_images + batch.num_regions + int(batch.hard_mask.sum())
        stats["short_text_uses"] = uses
    return stats
