"""Readers: JSONL, .json lists, the official FineHARD layout and webdataset shards, on crafted files."""

import io
import json

import pytest
import webdataset as wds
from PIL import Image

from fgclip.data.readers import DataPathError, ImageError, LoadedRecord, expand_data_paths, open_sources
from fgclip.data.schema import BadRecord
from tests.data.conftest import record, write_image, write_jsonl


def png_bytes(colour=(10, 200, 10), size=40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_jsonl_reader_loads_records_and_reports_bad_lines(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    path = write_jsonl(tmp_path / "data.jsonl", [
        record("images/a.png", 0),
        "{not json",
        {**record("images/a.png", 1), "regions": [{"bbox": [0.5, 0.5, 0.4, 0.9], "caption": "empty box"}]},
        {**record("images/a.png", 2), "short_caption": ""},
        "",  # blank lines are not records
        record("images/missing.png", 3),
    ])
    source = open_sources([path])
    assert len(source) == 5
    first = source.load(0)
    assert isinstance(first, LoadedRecord)
    assert first.record.short_caption == "picture 0"
    assert first.image_path == tmp_path / "images" / "a.png"
    assert first.open_image().size == (48, 48)
    bad = [source.load(i) for i in (1, 2, 3)]
    assert all(isinstance(item, BadRecord) for item in bad)
    assert bad[0].source.endswith("data.jsonl:2") and "not valid JSON" in bad[0].reason
    assert "empty" in bad[1].reason
    assert "short_caption" in bad[2].reason
    missing = source.load(4)
    assert isinstance(missing, LoadedRecord)  # the record is fine; its image is not
    with pytest.raises(ImageError, match="not found"):
        missing.open_image()


def test_unreadable_image_is_an_image_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    source = open_sources([write_jsonl(tmp_path / "d.jsonl", [record("broken.png")])])
    with pytest.raises(ImageError, match="cannot decode"):
        source.load(0).open_image()


def test_finehard_json_list_is_mapped_as_the_spec_says(tmp_path):
    write_image(tmp_path / "grit" / "0001.jpg")
    item = {
        "f_path": "grit/0001.jpg",
        "caption": "A long CogVLM caption of the scene.",
        "short_caption": "a dog on a sofa",
        "bbox_info": [
            {"bbox": [0.1, 0.2, 0.5, 0.9, 0.87], "short_expr": "a brown dog", "long_expr": "a small brown dog with a collar",
             "flag_short_neg": 1, "short_expr_negs": {str(k): f"a dog negative {k}" for k in range(10)}},
            {"bbox": [0.6, 0.1, 0.9, 0.4], "short_expr": "a red cushion", "long_expr": "a red cushion on the left",
             "flag_short_neg": 0, "short_expr_negs": {"0": "ignored"}},
        ],
    }
    path = tmp_path / "finehard.json"
    path.write_text(json.dumps([item, {"f_path": "grit/0001.jpg", "caption": "", "short_caption": "x"}]))
    source = open_sources([path])
    loaded = source.load(0)
    assert isinstance(loaded, LoadedRecord)
    rec = loaded.record
    assert loaded.image_path == tmp_path / "grit" / "0001.jpg"
    assert rec.long_caption == "A long CogVLM caption of the scene."
    assert rec.short_caption == "a dog on a sofa"
    assert rec.regions[0].bbox == [0.1, 0.2, 0.5, 0.9]  # the score is dropped
    assert rec.regions[0].caption == "a brown dog"
    assert rec.regions[0].long_caption == "a small brown dog with a collar"
    assert rec.regions[0].hard_negatives == [f"a dog negative {k}" for k in range(10)]  # key order
    assert rec.regions[1].hard_negatives == []  # flag_short_neg 0: no negatives
    assert isinstance(source.load(1), BadRecord)  # empty long caption


def write_shard(path, samples):
    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)


def test_webdataset_shards_are_read_by_key(tmp_path):
    good = {**record("ignored.png", 0), "image": "0.png"}
    write_shard(tmp_path / "shard-000000.tar", [
        {"__key__": "000000", "png": png_bytes(), "json": good},
        {"__key__": "000001", "png": png_bytes()},  # no record
        {"__key__": "000002", "json": record("x.png", 2)},  # no image
    ])
    write_shard(tmp_path / "shard-000001.tar", [
        {"__key__": "000003", "jpg": png_bytes((0, 0, 250)), "json": {k: v for k, v in record("", 3).items() if k != "image"}},
        {"__key__": "000004", "png": b"garbage", "json": record("4.png", 4)},
        {"__key__": "000005", "png": png_bytes(), "json": b"{broken"},
    ])
    source = open_sources([str(tmp_path / "shard-{000000..000001}.tar")])
    assert len(source) == 6
    first = source.load(0)
    assert isinstance(first, LoadedRecord) and first.record.short_caption == "picture 0"
    assert first.open_image().getpixel((0, 0)) == (10, 200, 10)
    assert "no .json" in source.load(1).reason
    assert "no image" in source.load(2).reason
    third = source.load(3)  # the "image" field may be absent inside a shard: the member is the image
    assert isinstance(third, LoadedRecord) and third.open_image().getpixel((0, 0)) == (0, 0, 250)
    with pytest.raises(ImageError):
        source.load(4).open_image()
    assert "not valid JSON" in source.load(5).reason
    assert source.load(5).source.endswith("shard-000001.tar:000005")


def test_several_files_form_one_index(tmp_path, good_set):
    other = write_jsonl(tmp_path / "other.jsonl", [record(str(good_set.parent / "images" / "0.png"), 99)])
    source = open_sources([good_set, other])
    assert len(source) == 9
    assert source.load(8).record.short_caption == "picture 99"
    with pytest.raises(IndexError):
        source.load(9)


def test_bad_data_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataPathError, match="not found"):
        open_sources([tmp_path / "nope.jsonl"])
    with pytest.raises(DataPathError, match="folder"):
        open_sources([tmp_path])
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataPathError, match="unsupported"):
        open_sources([tmp_path / "data.csv"])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataPathError, match="no records"):
        open_sources([tmp_path / "empty.jsonl"])
    (tmp_path / "bad.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(DataPathError, match="tar"):
        open_sources([tmp_path / "bad.tar"])
    (tmp_path / "obj.json").write_text('{"image": "x"}')
    with pytest.raises(DataPathError, match="list"):
        open_sources([tmp_path / "obj.json"])


def test_brace_patterns_expand_like_webdataset():
    assert [p.name for p in expand_data_paths(["s/shard-{000000..000002}.tar", "a.jsonl"])] == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "a.jsonl"]
