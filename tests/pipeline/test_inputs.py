"""Input reading and splitting: image folders and lists, record files, counted bad input, shard files."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from fgclip.errors import UserError
from fgclip.pipeline.inputs import list_images, read_input_records, split_input
from fgclip.pipeline.shards import INPUT_STAGE, ShardLayout
from tests.official_records import finehard_box, finehard_item
from tests.pipeline.conftest import make_images, write_jsonl


def test_image_folder_is_searched_recursively_and_sorted(tmp_path):
    make_images(tmp_path / "b", 2)
    make_images(tmp_path / "a", 1)
    (tmp_path / "a" / "readme.md").write_text("x")
    found = list_images(tmp_path)
    assert found == sorted(found) and len(found) == 3
    assert all(os.path.isabs(p) and p.endswith(".png") for p in found)


def test_image_list_paths_are_relative_to_the_list(tmp_path):
    make_images(tmp_path / "imgs", 2)
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("# comment\n../imgs/img_000.png\n\n../imgs/img_001.png\n../imgs/missing.png\n")
    assert list_images(listing) == [str(tmp_path / "imgs" / f) for f in ("img_000.png", "img_001.png", "missing.png")]
    layout = ShardLayout(tmp_path / "out")
    manifest = split_input(layout, images=str(listing), input_file=None, shard_size=10, max_bad_fraction=0.5)
    assert manifest["num_records"] == 2 and manifest["input_counts"] == {"items": 3, "missing_image": 1}


def test_record_file_paths_become_absolute_and_bad_items_are_counted(tmp_path):
    make_images(tmp_path / "images", 2)
    (tmp_path / "data").mkdir()
    records = write_jsonl(
        tmp_path / "data" / "r.jsonl",
        [
            {"image": "../images/img_000.png"},
            {"image": str(tmp_path / "images" / "img_001.png"), "long_caption": "kept", "source": "web"},
            {"image": "../images/none.png"},
            "{not json",
            {"image": "../images/img_000.png", "regions": [{"bbox": [0, 0, 2, 1], "caption": "x"}]},
        ],
    )
    counts = Counter()
    found, _ = read_input_records(records, counts)
    assert [r.image for r in found] == [
        str(tmp_path / "images" / "img_000.png"),
        str(tmp_path / "images" / "img_001.png"),
    ]
    assert found[1].extra == {"source": "web"}  # unknown fields travel with the record
    assert counts == {"items": 5, "bad_record": 2, "missing_image": 1}


def test_finehard_lists_are_read(tmp_path):
    make_images(tmp_path, 1)
    box = finehard_box([0.1, 0.1, 0.5, 0.5, 0.9], "a dog", "a dog on grass", [f"a cat {i}" for i in range(10)])
    item = finehard_item("img_000.png", "Long.", "short", [box])
    path = tmp_path / "finehard.json"
    path.write_text(json.dumps([item]))
    found, _ = read_input_records(path, Counter())
    assert found[0].regions[0].bbox == [0.1, 0.1, 0.5, 0.5] and len(found[0].regions[0].hard_negatives) == 10


def test_split_writes_shards_once(tmp_path, record_file):
    layout = ShardLayout(tmp_path / "out")
    manifest = split_input(layout, images=None, input_file=str(record_file), shard_size=5, max_bad_fraction=0.5)
    assert manifest["num_shards"] == 3 and manifest["num_records"] == 12
    sizes = [len(layout.read_shard(INPUT_STAGE, i)[0]) for i in range(3)]
    assert sizes == [5, 5, 2]
    first = layout.shard_path(INPUT_STAGE, 0).stat().st_mtime_ns
    assert split_input(layout, images=None, input_file=str(record_file), shard_size=5, max_bad_fraction=0.5) == manifest
    assert layout.shard_path(INPUT_STAGE, 0).stat().st_mtime_ns == first
    with pytest.raises(UserError, match="--shard_size"):
        split_input(layout, images=None, input_file=str(record_file), shard_size=4, max_bad_fraction=0.5)


def test_too_much_bad_input_stops(tmp_path):
    make_images(tmp_path, 1)
    records = write_jsonl(tmp_path / "r.jsonl", [{"image": "img_000.png"}, "{bad", "{bad"])
    layout = ShardLayout(tmp_path / "out")
    with pytest.raises(UserError, match="2 of 3 input items are unusable"):
        split_input(layout, images=None, input_file=str(records), shard_size=5, max_bad_fraction=0.5)
    assert (
        split_input(layout, images=None, input_file=str(records), shard_size=5, max_bad_fraction=0.9)["num_records"]
        == 1
    )
    with pytest.raises(UserError, match="exactly one"):
        split_input(layout, images=None, input_file=None, shard_size=5, max_bad_fraction=0.5)


def test_a_line_of_invalid_utf8_is_one_bad_record(tmp_path):
    """issue 15: the trainer counts such a line as bad; the engine stopped with a traceback."""
    make_images(tmp_path, 2)
    records = write_jsonl(tmp_path / "r.jsonl", [{"image": "img_000.png"}])
    with records.open("ab") as handle:
        handle.write(b'{"image": "img_001.png", "long_caption": "caf\xe9"}\n')  # Latin-1 bytes
        handle.write(json.dumps({"image": "img_001.png"}).encode() + b"\n")
    counts = Counter()
    found, _ = read_input_records(records, counts)
    assert [os.path.basename(r.image) for r in found] == ["img_000.png", "img_001.png"]
    assert counts == {"items": 3, "bad_record": 1}


def test_images_and_records_passed_to_the_wrong_option(tmp_path):
    (image,) = make_images(tmp_path, 1)
    with pytest.raises(UserError, match="is an image; --input takes a record file"):
        read_input_records(image, Counter())
    assert list_images(image) == [str(image)]  # one image is a valid --images
    records = write_jsonl(tmp_path / "r.jsonl", [{"image": "img_000.png"}])
    with pytest.raises(UserError, match="is a record file; pass it as --input"):
        list_images(records)
    binary = tmp_path / "photos.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(UserError, match="neither an image nor a text list of image paths"):
        list_images(binary)


def test_the_output_folder_inside_the_image_folder_is_not_read(tmp_path):
    make_images(tmp_path / "photos", 2)
    make_images(tmp_path / "photos" / "out", 1)  # e.g. the stats.png of an earlier run
    assert len(list_images(tmp_path / "photos", exclude=tmp_path / "photos" / "out")) == 2


def test_repeated_records_and_listed_images_are_kept_once_and_counted(tmp_path):
    make_images(tmp_path / "imgs", 2)
    records = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"image": "imgs/img_000.png", "long_caption": "a"},
            {"image": "imgs/img_001.png"},
            {"image": "imgs/img_000.png", "long_caption": "a"},
            {"image": "imgs/img_000.png", "long_caption": "b"},
        ],
    )
    counts = Counter()
    found, _ = read_input_records(records, counts)
    assert [(os.path.basename(r.image), r.long_caption) for r in found] == [
        ("img_000.png", "a"),
        ("img_001.png", ""),
        ("img_000.png", "b"),
    ]
    assert counts == {"items": 4, "duplicate_record": 1}
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/img_000.png\nimgs/img_001.png\nimgs/img_000.png\n")
    layout = ShardLayout(tmp_path / "out")
    manifest = split_input(layout, images=str(listing), input_file=None, shard_size=10, max_bad_fraction=0.0)
    assert manifest["num_records"] == 2 and manifest["input_counts"] == {"items": 3, "duplicate_record": 1}
