"""Batches: one de-duplicated short-text tensor, index tensors into it, hard-negative masks."""

import torch

from fgclip.data.collate import collate_records
from fgclip.data.dataset import Sample


def sample(short, regions):
    """regions: list of (text, caption, negatives)."""
    return Sample(
        pixel_values=torch.zeros(3, 8, 8),
        long_caption=f"long {short}",
        short_caption=short,
        boxes=torch.tensor([[0.1, 0.1, 0.5, 0.5]] * len(regions)).reshape(-1, 4),
        region_texts=[r[0] for r in regions],
        region_captions=[r[1] for r in regions],
        hard_negatives=[r[2] for r in regions],
    )


def decode(tokenizer, ids):
    return tokenizer.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_short_texts_are_deduplicated_and_indexed(tokenizer):
    samples = [
        sample(
            "a red cube",
            [
                ("a red cube", "a red cube", ["a blue cube", "a green cube"]),
                ("the big red cube on the left", "a red cube", ["a blue cube"]),
            ],
        ),
        sample("a cat", [("a cat", "a cat", [])]),
        sample("a red cube", []),
    ]
    batch = collate_records(samples, tokenizer, with_regions=True)
    texts = [decode(tokenizer, row) for row in batch.short_input_ids]
    assert len(texts) == len(set(texts)) == 5  # each distinct text once
    assert [texts[i] for i in batch.caption_index] == ["a red cube", "a cat", "a red cube"]
    assert [texts[i] for i in batch.region_text_index] == ["a red cube", "the big red cube on the left", "a cat"]
    assert batch.hard_index.shape == batch.hard_mask.shape == (3, 3)
    assert batch.hard_mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    assert [texts[i] for i in batch.hard_index[0]] == ["a red cube", "a blue cube", "a green cube"]
    assert texts[batch.hard_index[1, 0]] == "a red cube"  # the positive is the short expression
    assert [b.shape[0] for b in batch.boxes] == [2, 1, 0] and batch.num_regions == 3
    # padded to the longest of the batch, not to 77 / 248
    assert batch.short_input_ids.shape[1] == max(batch.short_attention_mask.sum(1))
    assert batch.long_input_ids.shape == (3, max(batch.long_attention_mask.sum(1)))
    inputs = batch.model_inputs()
    assert set(inputs) == {
        "pixel_values",
        "long_input_ids",
        "long_attention_mask",
        "short_input_ids",
        "short_attention_mask",
        "boxes",
    }


def test_stage_one_batch_has_no_region_fields(tokenizer):
    batch = collate_records([sample("a", [("x", "x", ["y"])]), sample("b", [])], tokenizer, with_regions=False)
    assert batch.boxes is None and batch.hard_index is None and batch.region_text_index is None
    assert batch.short_input_ids.shape[0] == 2
    moved = batch.to("cpu", torch.bfloat16)
    assert moved.pixel_values.dtype == torch.bfloat16 and moved.short_input_ids.dtype == torch.long


def test_texts_cut_to_length_are_counted(tokenizer):
    exact = "a " * 75  # 75 words + start + end = 77 tokens: fits exactly
    samples = [sample(exact, []), sample("a " * 90, []), sample("short", [])]
    samples[0].long_caption = "word " * 300
    batch = collate_records(samples, tokenizer, with_regions=False)
    assert batch.truncated_short == 1 and batch.truncated_long == 1
    assert batch.seen == 3 and batch.bad == []
