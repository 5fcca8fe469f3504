"""Filters: every drop reason on hand-made records, and the stats files."""

from __future__ import annotations

import json
from collections import Counter

from PIL import Image

from fgclip.data.schema import Record, Region
from fgclip.pipeline.config import FilterConfig
from fgclip.pipeline.filters import FilterStep
from fgclip.pipeline.stats import RecordStats, write_stats


def _record(regions, long_caption="A dog on a sofa. More.", short_caption="a dog") -> Record:
    return Record(image="a.png", long_caption=long_caption, short_caption=short_caption, regions=regions)


def test_region_drop_reasons():
    regions = [
        Region(bbox=[0.1, 0.1, 0.5, 0.5], caption="a small dog", hard_negatives=["a large dog"]),
        Region(bbox=[0.6, 0.6, 0.9, 0.9], caption="A small dog."),  # same caption as the first
        Region(bbox=[0.11, 0.1, 0.5, 0.51], caption="a brown dog"),  # the first box again
        Region(bbox=[0.0, 0.0, 0.03, 0.03], caption="a tiny ball"),  # area 0.0009 < 0.0025
        Region(bbox=[0.2, 0.0, 0.21, 0.9], caption="a thin pole"),  # side 0.01 < 0.02
        Region(bbox=[0.5, 0.0, 0.9, 0.4], caption=""),
        Region(bbox=[0.5, 0.0, 0.9, 1.4], caption="a box outside"),
        Region(bbox=[0.5, 0.1, 0.9, 0.5], caption="word " * 80),  # over 77 tokens
        Region(
            bbox=[0.0, 0.5, 0.45, 1.0],
            caption="a red cat",
            long_caption="cat " * 300,
            hard_negatives=["a blue cat", "A blue cat", "a red cat", "", "a green cat"],
        ),
    ]
    counts = Counter()
    (record,) = FilterStep(FilterConfig())([_record(regions)], counts)
    assert [r.caption for r in record.regions] == ["a small dog", "a red cat"]
    cat = record.regions[1]
    assert cat.long_caption is None and cat.hard_negatives == ["a blue cat", "a green cat"]
    for reason in ("duplicate_caption", "duplicate_box", "empty_caption", "invalid_box", "caption_too_long"):
        assert counts[f"dropped_region_{reason}"] == 1, reason
    assert counts["dropped_region_tiny_box"] == 2
    assert counts["dropped_negative"] == 3 and counts["removed_region_long_caption_too_long"] == 1
    assert counts["regions_kept"] == 2 and counts["records_kept"] == 1


def test_record_drop_reasons_and_limits():
    box = [0.1, 0.1, 0.6, 0.6]
    records = [
        _record([], long_caption=""),
        _record([], short_caption=""),
        _record([], long_caption="word " * 300),
        _record([], short_caption="word " * 80),
        _record([]),
        _record([Region(bbox=box, caption=f"a dog number {i}") for i in range(3)]),
    ]
    counts = Counter()
    kept = FilterStep(FilterConfig(duplicate_iou=1.01, max_regions=2))(records, counts)
    assert len(kept) == 2 and len(kept[1].regions) == 2 and counts["dropped_region_over_max_regions"] == 1
    for reason in ("missing_long_caption", "missing_short_caption", "long_caption_too_long", "short_caption_too_long"):
        assert counts[f"dropped_record_{reason}"] == 1, reason
    strict = Counter()
    assert len(FilterStep(FilterConfig(drop_records_without_regions=True))(records[4:], strict)) == 1
    assert strict["dropped_record_without_regions"] == 1
    # Limits of 0 switch the length checks off.
    assert len(FilterStep(FilterConfig(max_long_tokens=0, max_short_tokens=0))(records[2:4], Counter())) == 2


def test_token_limits_are_clip_tokens_with_bos_and_eos():
    step = FilterStep(FilterConfig())
    assert step.count_tokens(["a dog"]) == [4]
    text = " ".join(["dog"] * 75)  # 75 + BOS + EOS = 77: fits
    assert len(step([_record([], short_caption=text)], Counter())) == 1
    assert len(step([_record([], short_caption=text + " dog")], Counter())) == 0


def test_stats_files(tmp_path):
    stats = RecordStats()
    stats.add(
        _record(
            [
                Region(bbox=[0, 0, 1, 1], caption="a", hard_negatives=["b"] * 10),
                Region(bbox=[0, 0, 1, 1], caption="c", hard_negatives=["d"] * 9),
            ]
        )
    )
    stats.add(_record([]))
    result = write_stats(
        tmp_path, stats, {"items": 3, "missing_image": 1}, {"filter": {"dropped_region_tiny_box": 2, "regions_kept": 2}}
    )
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert on_disk == result
    assert result["images"] == 2 and result["regions"] == 2 and result["negatives"] == 19
    assert result["regions_per_image"] == {"0": 1, "2": 1} and result["negatives_per_region"] == {"9": 1, "10": 1}
    assert result["mean_negatives_per_region"] == 9.5 and result["images_without_regions"] == 1
    assert result["drop_reasons"] == {"input/missing_image": 1, "filter/region_tiny_box": 2}
    with Image.open(tmp_path / "stats.png") as image:
        assert image.width > 600 and image.height > 200
