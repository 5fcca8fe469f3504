"""Samples: image decoding, region picking, skip accounting and the bad-record limit."""

import json

import pytest
import torch

from fgclip.data.dataset import BadRecordCounter, DataError, FineGrainedDataset
from fgclip.data.readers import open_sources
from fgclip.data.schema import BadRecord
from tests.data.conftest import record, write_jsonl


def test_sample_has_image_texts_and_at_most_four_regions(good_set):
    dataset = FineGrainedDataset(open_sources([good_set]), image_size=32, with_regions=True)
    sample = dataset[(5, 123)]  # record 5 has 6 regions
    assert sample.pixel_values.shape == (3, 32, 32)
    assert sample.boxes.shape == (4, 4)
    assert len(sample.region_texts) == len(sample.region_captions) == len(sample.hard_negatives) == 4
    for text, caption in zip(sample.region_texts, sample.region_captions):
        assert text == caption or text.startswith("the long expression of " + caption.split(" of ")[0])
    assert all(len(negatives) == 10 for negatives in sample.hard_negatives)
    assert sample.skipped == []
    again = dataset[(5, 123)]
    assert again.region_texts == sample.region_texts  # random choices follow the sample seed
    choices = {tuple(dataset[(5, seed)].region_captions) for seed in range(20)}
    assert len(choices) > 1  # and other seeds pick other boxes


def test_stage_one_samples_have_no_regions(good_set):
    sample = FineGrainedDataset(open_sources([good_set]), image_size=32, with_regions=False)[3]
    assert sample.boxes.shape == (0, 4) and sample.region_texts == []


def test_negatives_are_distinct_and_never_the_caption(tmp_path, good_set):
    item = record("images/0.png", 0, regions=1)
    item["regions"][0]["hard_negatives"] = [item["regions"][0]["caption"], "a", "a", "b"] + [f"n{i}" for i in range(12)]
    path = write_jsonl(good_set.parent / "negs.jsonl", [item])
    sample = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=True, num_hard_negatives=10)[0]
    assert sample.hard_negatives[0] == ["a", "b"] + [f"n{i}" for i in range(8)]


def test_bad_records_are_reported_with_the_substitute(good_set):
    lines = good_set.read_text().splitlines()
    lines[2] = json.dumps(record("images/missing.png", 2))
    lines[3] = "{broken"
    path = good_set.parent / "with_bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dataset = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=True)
    sample = dataset[2]
    assert sample.long_caption.endswith("picture 4 with many details")  # the next usable record
    assert [bad.source.rsplit(":", 1)[-1] for bad in sample.skipped] == ["3", "4"]  # file lines
    assert "not found" in sample.skipped[0].reason and "not valid JSON" in sample.skipped[1].reason


def test_a_run_of_unusable_records_is_a_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(f"missing{i}.png", i) for i in range(5)])
    dataset = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=False, max_substitutes=3)
    with pytest.raises(DataError, match="4 records in a row"):
        dataset[0]


def test_counter_stops_above_the_limit_and_names_examples():
    counter = BadRecordCounter(max_bad_fraction=0.1, min_seen=10)
    counter.add(5, [BadRecord("a.jsonl:3", "image not found: x.png")])
    counter.check()  # 6 seen < 10: not judged yet
    counter.add(3, [])
    counter.check(final=False)
    with pytest.raises(DataError, match=r"1 of 9 records are bad .*a.jsonl:3: image not found"):
        counter.check(final=True)
    counter.add(100, [])
    counter.check()  # 1 of 109 < 10 %
    assert counter.summary()["bad_records"] == 1 and counter.summary()["seen_records"] == 109
    restored = BadRecordCounter()
    restored.load_state_dict(counter.state_dict())
    assert restored.summary() == counter.summary() | {"bad_fraction": restored.summary()["bad_fraction"]}
    with pytest.raises(DataError):
        counter.check(good=10, bad=5)  # totals over ranks
