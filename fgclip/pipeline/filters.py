"""Step 5: drop what would hurt training, and count every drop by its reason.

Records: missing captions, captions longer than the text encoder takes (248 tokens long, 77 short).
Regions: empty caption, invalid or tiny box, caption over 77 tokens, duplicates (the same caption as an
earlier region of the image, or a box overlapping one at IoU >= `duplicate_iou`: either would make two
positives of one pair in the regional contrastive loss). Negatives: empty, equal to the positive,
repeated, or over 77 tokens.
"""

from __future__ import annotations

from collections import Counter

import torch
from torchvision.ops import box_iou

from fgclip.data.schema import Record, RecordError, Region, check_bbox
from fgclip.pipeline.config import FilterConfig
from fgclip.pipeline.negatives import normalise_text
from fgclip.tokenizer import build_clip_tokenizer


class TokenCounter:
    """CLIP BPE token counts (BOS and EOS included), the unit FG-CLIP's 77/248 limits are in."""

    def __init__(self):
        self.tokenizer = build_clip_tokenizer()

    def __call__(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]


class FilterStep:
    def __init__(self, config: FilterConfig):
        self.config = config
        self.count_tokens = TokenCounter()

    def __call__(self, records: list[Record], counts: Counter) -> list[Record]:
        limits = self._token_lengths(records)
        kept = []
        for record in records:
            reason = self._record_problem(record, limits)
            if reason:
                counts[f"dropped_record_{reason}"] += 1
                continue
            record.regions = self._filter_regions(record.regions, limits, counts)
            if not record.regions and self.config.drop_records_without_regions:
                counts["dropped_record_without_regions"] += 1
                continue
            kept.append(record)
        counts["records_kept"] += len(kept)
        return kept

    def _token_lengths(self, records: list[Record]) -> dict[str, int]:
        """Token counts of the texts that could break a limit. A byte is at most one BPE token, so a
        text of B UTF-8 bytes has at most B + 2 tokens: shorter texts are never tokenised (most are)."""
        limits = [n for n in (self.config.max_long_tokens, self.config.max_short_tokens) if n > 0]
        if not limits:
            return {}
        texts = {r.long_caption for r in records} | {r.short_caption for r in records}
        for record in records:
            for region in record.regions:
                texts.add(region.caption)
                texts.update(region.hard_negatives)
                if region.long_caption:
                    texts.add(region.long_caption)
        ordered = sorted(t for t in texts if len(t.encode("utf-8")) + 2 > min(limits))
        return dict(zip(ordered, self.count_tokens(ordered)))

    def _too_long(self, text: str, limit: int, lengths: dict[str, int]) -> bool:
        return limit > 0 and lengths.get(text, 0) > limit

    def _record_problem(self, record: Record, lengths: dict[str, int]) -> str | None:
        if not record.long_caption.strip():
            return "missing_long_caption"
        if not record.short_caption.strip():
            return "missing_short_caption"
        if self._too_long(record.long_caption, self.config.max_long_tokens, lengths):
            return "long_caption_too_long"
        if self._too_long(record.short_caption, self.config.max_short_tokens, lengths):
            return "short_caption_too_long"
        return None

    def _filter_regions(self, regions: list[Region], lengths: dict[str, int], counts: Counter) -> list[Region]:
        kept: list[Region] = []
        captions: set[str] = set()
        for region in regions:
            reason = self._region_problem(region, lengths)
            if reason is None and normalise_text(region.caption) in captions:
                reason = "duplicate_caption"
            if reason is None and kept:
                overlap = box_iou(torch.tensor([region.bbox]), torch.tensor([r.bbox for r in kept])).max().item()
                if overlap >= self.config.duplicate_iou:
                    reason = "duplicate_box"
            if reason is None and self.config.max_regions and len(kept) >= self.config.max_regions:
                reason = "over_max_regions"
            if reason:
                counts[f"dropped_region_{reason}"] += 1
                continue
            if region.long_caption and self._too_long(region.long_caption, self.config.max_long_tokens, lengths):
                region.long_caption = None
                counts["removed_region_long_caption_too_long"] += 1
            region.hard_negatives = self._filter_negatives(region, lengths, counts)
            captions.add(normalise_text(region.caption))
            kept.append(region)
        counts["regions_kept"] += len(kept)
        return kept

    def _region_problem(self, region: Region, lengths: dict[str, int]) -> str | None:
        if not region.caption.strip():
            return "empty_caption"
        try:
            x1, y1, x2, y2 = check_bbox(region.bbox)
        except RecordError:
            return "invalid_box"
        if (x2 - x1) * (y2 - y1) < self.config.min_box_area or min(x2 - x1, y2 - y1) < self.config.min_box_side:
            return "tiny_box"
        if self._too_long(region.caption, self.config.max_short_tokens, lengths):
            return "caption_too_long"
        return None

    def _filter_negatives(self, region: Region, lengths: dict[str, int], counts: Counter) -> list[str]:
        kept, seen = [], {normalise_text(region.caption)}
        for negative in region.hard_negatives:
            normal = normalise_text(negative)
            if not normal or normal in seen or self._too_long(negative, self.config.max_short_tokens, lengths):
                counts["dropped_negative"] += 1
                continue
            seen.add(normal)
            kept.append(negative)
        return kept
