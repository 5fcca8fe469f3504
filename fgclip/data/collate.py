"""Batches for `FGCLIPModel.forward`: images, padded token ids, boxes and index tensors.

Every short text of a step (short captions, region texts, hard-negative candidates) goes into ONE
de-duplicated tensor, so each distinct text is encoded once per step; index tensors say where each
use finds its embedding. Texts are padded to the longest of the batch (exact under CLIP's causal mask
and first-EOS pooling). Texts longer than the model's paths (248 tokens long, 77 short) are cut, and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

from fgclip.data.dataset import Sample
from fgclip.data.schema import BadRecord
from fgclip.tokenizer import LONG_LENGTH, SHORT_LENGTH, FGCLIPTokenizer


@dataclass
class Batch:
    """One local batch of B images, T distinct short texts and R regions (K = most negatives of a region).

    pixel_values: `(B, 3, S, S)`.
    long_input_ids, long_attention_mask: `(B, L_long)` long captions (248-slot path).
    short_input_ids, short_attention_mask: `(T, L_short)` every distinct short text of the batch.
    caption_index: `(B,)` row of each image's short caption in the short texts.
    boxes: B tensors `(N_i, 4)`, or None when the batch has no regions (stage 1); `R = sum N_i`.
    region_text_index: `(R,)` row of each region's text (its caption or long caption).
    hard_index: `(R, 1 + K)` rows of [positive caption, negative_1..K]; padded slots point at row 0.
    hard_mask: `(R, 1 + K)` bool, False for padded negatives.
    seen: how many of the sampled records the run sees for the first time (for the record accounting).
    bad: those of them that were bad (each replaced by a substitute in the batch).
    truncated_long / truncated_short: long captions / distinct short texts cut to 248 / 77 tokens.
    """

    pixel_values: torch.Tensor
    long_input_ids: torch.Tensor
    long_attention_mask: torch.Tensor
    short_input_ids: torch.Tensor
    short_attention_mask: torch.Tensor
    caption_index: torch.Tensor
    boxes: list[torch.Tensor] | None = None
    region_text_index: torch.Tensor | None = None
    hard_index: torch.Tensor | None = None
    hard_mask: torch.Tensor | None = None
    seen: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    truncated_long: int = 0
    truncated_short: int = 0

    @property
    def num_images(self) -> int:
        return self.pixel_values.shape[0]

    @property
    def num_regions(self) -> int:
        return 0 if self.boxes is None else sum(int(b.shape[0]) for b in self.boxes)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """The batch on `device`; `dtype` casts only the images (token ids and boxes keep theirs)."""
        moved = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=True)
            elif item.name == "boxes" and value is not None:
                value = [box.to(device, non_blocking=True) for box in value]
            moved[item.name] = value
        if dtype is not None:
            moved["pixel_values"] = moved["pixel_values"].to(dtype)
        return Batch(**moved)

    def model_inputs(self) -> dict:
        """Keyword arguments of `FGCLIPModel.forward` (also what a DeepSpeed engine is called with)."""
        return {
            "pixel_values": self.pixel_values,
            "long_input_ids": self.long_input_ids,
            "long_attention_mask": self.long_attention_mask,
            "short_input_ids": self.short_input_ids,
            "short_attention_mask": self.short_attention_mask,
            "boxes": self.boxes,
        }


class _TextTable:
    """Distinct texts in first-seen order, with the row of each."""

    def __init__(self):
        self.rows: dict[str, int] = {}

    def add(self, text: str) -> int:
        return self.rows.setdefault(text, len(self.rows))

    @property
    def texts(self) -> list[str]:
        return list(self.rows)


def count_truncated(tokenizer: FGCLIPTokenizer, texts: list[str], attention_mask: torch.Tensor, limit: int) -> int:
    """How many of `texts` were longer than `limit` tokens. Only rows that fill `limit` can have been cut;
    those are tokenised once more with room for one more token, which a cut text fills."""
    full = (attention_mask.sum(dim=1) >= limit).nonzero().flatten().tolist()
    if not full:
        return 0
    again = tokenizer.tokenizer([texts[row] for row in full], max_length=limit + 1, truncation=True)["input_ids"]
    return sum(len(ids) > limit for ids in again)


def collate_records(samples: Sequence[Sample], tokenizer: FGCLIPTokenizer, with_regions: bool) -> Batch:
    """Stack `samples` into a `Batch`; regions (and hard negatives) only when `with_regions`."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    table = _TextTable()
    caption_index = [table.add(sample.short_caption) for sample in samples]
    boxes = region_text_index = hard_index = hard_mask = None
    if with_regions:
        boxes = [sample.boxes for sample in samples]
        region_rows, candidate_rows = [], []
        for sample in samples:
            for text, caption, negatives in zip(sample.region_texts, sample.region_captions, sample.hard_negatives):
                region_rows.append(table.add(text))
                candidate_rows.append([table.add(caption)] + [table.add(negative) for negative in negatives])
        width = max((len(rows) for rows in candidate_rows), default=1)
        hard_index = torch.zeros(len(candidate_rows), width, dtype=torch.long)
        hard_mask = torch.zeros(len(candidate_rows), width, dtype=torch.bool)
        for row, rows in enumerate(candidate_rows):
            hard_index[row, : len(rows)] = torch.tensor(rows)
            hard_mask[row, : len(rows)] = True
        region_text_index = torch.tensor(region_rows, dtype=torch.long)
    long_captions = [sample.long_caption for sample in samples]
    long_tokens = tokenizer(long_captions, long=True)
    short_tokens = tokenizer(table.texts, long=False)
    return Batch(
        pixel_values=torch.stack([sample.pixel_values for sample in samples]),
        long_input_ids=long_tokens["input_ids"],
        long_attention_mask=long_tokens["attention_mask"],
        short_input_ids=short_tokens["input_ids"],
        short_attention_mask=short_tokens["attention_mask"],
        caption_index=torch.tensor(caption_index, dtype=torch.long),
        boxes=boxes,
        region_text_index=region_text_index,
        hard_index=hard_index,
        hard_mask=hard_mask,
        seen=sum(sample.first_sighting for sample in samples),
        bad=[sample.bad for sample in samples if sample.bad is not None and sample.first_sighting],
        truncated_long=count_truncated(tokenizer, long_captions, long_tokens["attention_mask"], LONG_LENGTH),
        truncated_short=count_truncated(tokenizer, table.texts, short_tokens["attention_mask"], SHORT_LENGTH),
    )


class Collator:
    """`collate_records` as a picklable callable for `DataLoader(collate_fn=...)`."""

    def __init__(self, with_regions: bool, tokenizer: FGCLIPTokenizer | None = None):
        self.with_regions = with_regions
        self.tokenizer = tokenizer or FGCLIPTokenizer()

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate_records(samples, self.tokenizer, self.with_regions)
