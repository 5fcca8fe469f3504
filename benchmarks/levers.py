"""The text levers of a training batch, switched off: for measuring what they save and proving them exact.

`collate_records` pads texts to the longest of the batch and puts each distinct short text in the batch
once. These functions rebuild the batch the way a trainer without those levers would feed it:
`pad_to_fixed` pads every text to the path's full length (77 short, 248 long), as `padding="max_length"`
tokenisation does; `expand_short_texts` gives every use of a short text (caption, region text, each
hard-negative candidate) its own row. Both change only how the work is laid out, so the loss and
gradients must stay the same (tests/benchmarks/test_levers.py checks it to 1e-5).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from fgclip.data.collate import Batch
from fgclip.tokenizer import LONG_LENGTH, SHORT_LENGTH


def _pad(ids: torch.Tensor, mask: torch.Tensor, length: int, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    missing = length - ids.shape[1]
    if missing < 0:
        raise ValueError(f"texts of {ids.shape[1]} tokens do not fit a fixed length of {length}")
    return F.pad(ids, (0, missing), value=pad_token_id), F.pad(mask, (0, missing), value=0)


def pad_to_fixed(
    batch: Batch, pad_token_id: int, short_length: int = SHORT_LENGTH, long_length: int = LONG_LENGTH
) -> Batch:
    """The batch with every short text padded to `short_length` tokens and every long one to
    `long_length` (right padding with the tokenizer's pad token, mask 0), as fixed-shape trainers do."""
    short_ids, short_mask = _pad(batch.short_input_ids, batch.short_attention_mask, short_length, pad_token_id)
    changes = {"short_input_ids": short_ids, "short_attention_mask": short_mask}
    if batch.long_input_ids is not None:
        long_ids, long_mask = _pad(batch.long_input_ids, batch.long_attention_mask, long_length, pad_token_id)
        changes.update(long_input_ids=long_ids, long_attention_mask=long_mask)
    return dataclasses.replace(batch, **changes)


def expand_short_texts(batch: Batch) -> Batch:
    """The batch with one short-text row per use instead of one per distinct text.

    Rows come in the order: captions `(B)`, region texts `(R)`, then the valid hard-negative
    candidates row by row; padded candidate slots keep pointing at row 0 (they are masked out).
    """
    uses = [batch.caption_index]
    caption_index = torch.arange(batch.num_images)
    region_text_index = hard_index = None
    if batch.region_text_index is not None:
        regions = batch.region_text_index.shape[0]
        uses.append(batch.region_text_index)
        region_text_index = torch.arange(regions) + batch.num_images
        valid = batch.hard_mask
        uses.append(batch.hard_index[valid])
        hard_index = torch.zeros_like(batch.hard_index)
        hard_index[valid] = torch.arange(int(valid.sum())) + batch.num_images + regions
    rows = torch.cat(uses)
    return dataclasses.replace(
        batch,
        short_input_ids=batch.short_input_ids[rows],
        short_attention_mask=batch.short_attention_mask[rows],
        caption_index=caption_index,
        region_text_index=region_text_index,
        hard_index=hard_index,
    )


def without_text_levers(batch: Batch, pad_token_id: int) -> Batch:
    """Both levers off: every use its own row, every text at full length."""
    return pad_to_fixed(expand_short_texts(batch), pad_token_id)


def short_only(batch: Batch) -> Batch:
    """The batch without its long captions: a stage-1 step on short captions alone (as CLIP trains)."""
    return dataclasses.replace(batch, long_input_ids=None, long_attention_mask=None)
