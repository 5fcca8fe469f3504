"""FineHARD-like workload: the load the stage-2 figures claim (4 regions, 10 one-word hard negatives)."""

from __future__ import annotations

from benchmarks.workload import WORDS, make_batch, make_records, make_samples, text_stats
from fgclip import FGCLIPTokenizer


def test_records_have_finehard_shape_and_are_deterministic():
    records = make_records(5, seed=3)
    assert [r.to_json() for r in records] == [r.to_json() for r in make_records(5, seed=3)]
    for record in records:
        assert len(record.regions) == 4
        for region in record.regions:
            assert len(region.hard_negatives) == len(set(region.hard_negatives)) == 10
            caption = region.caption.split()
            for negative in region.hard_negatives:
                differing = sum(a != b for a, b in zip(caption, negative.split()))
                assert len(negative.split()) == len(caption) and differing == 1


def test_every_word_is_one_clip_token():
    ids = FGCLIPTokenizer()(list(WORDS))["input_ids"]
    assert ids.shape[1] == 3  # BOS, the word, EOS


def test_stage2_batch_goes_through_the_trainers_collator():
    samples = make_samples(make_records(2, seed=0), 32, with_regions=True)
    batch = make_batch(samples, with_regions=True)
    stats = text_stats(batch)
    assert stats["images"] == 2 and stats["regions"] == 8
    assert batch.pixel_values.shape == (2, 3, 32, 32)
    assert stats["short_text_uses"] == 2 + 8 + 8 * 11
    assert stats["short_texts"] < stats["short_text_uses"]  # the region caption and its positive are one text
    assert stats["short_padded_length"] <= 77 and stats["long_padded_length"] <= 248
