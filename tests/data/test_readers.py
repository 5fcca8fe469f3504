"""Readers: JSONL, .json lists, the official FineHARD layout and webdataset shards, on crafted files."""

import io
import json

import pytest
import webdataset as wds
from PIL import Image

from fgclip.data.readers import ImageError, LoadedRecord, expand_data_paths, open_sources
from fgclip.data.schema import BadRecord
from fgclip.errors import UserError
from tests.data.conftest import OFFICIAL_JSON_NAMES, official_finehard, record, write_image, write_jsonl
from tests.official_records import finehard_box, finehard_item


def png_bytes(colour=(10, 200, 10), size=40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_jsonl_reader_loads_records_and_reports_bad_lines(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            record("images/a.png", 0),
            "{not json",
            {**record("images/a.png", 1), "regions": [{"bbox": [0.5, 0.5, 0.4, 0.9], "caption": "empty box"}]},
            {**record("images/a.png", 2), "short_caption": ""},
            "",  # blank lines are not records
            record("images/missing.png", 3),
        ],
    )
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
    boxes = [
        finehard_box(
            [0.1, 0.2, 0.5, 0.9, 0.87],
            "a brown dog",
            "a small brown dog with a collar",
            [f"a dog negative {k}" for k in range(10)],
        ),
        finehard_box([0.6, 0.1, 0.9, 0.4], "a red cushion", "a red cushion on the left", ["ignored"], flag_short_neg=0),
    ]
    item = finehard_item("grit/0001.jpg", "A long CogVLM caption of the scene.", "a dog on a sofa", boxes)
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
    write_shard(
        tmp_path / "shard-000000.tar",
        [
            {"__key__": "000000", "png": png_bytes(), "json": good},
            {"__key__": "000001", "png": png_bytes()},  # no record
            {"__key__": "000002", "json": record("x.png", 2)},  # no image
        ],
    )
    write_shard(
        tmp_path / "shard-000001.tar",
        [
            {
                "__key__": "000003",
                "jpg": png_bytes((0, 0, 250)),
                "json": {k: v for k, v in record("", 3).items() if k != "image"},
            },
            {"__key__": "000004", "png": b"garbage", "json": record("4.png", 4)},
            {"__key__": "000005", "png": png_bytes(), "json": b"{broken"},
        ],
    )
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
    with pytest.raises(UserError, match="not found"):
        open_sources([tmp_path / "nope.jsonl"])
    with pytest.raises(UserError, match="folder"):
        open_sources([tmp_path])
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported"):
        open_sources([tmp_path / "data.csv"])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records"):
        open_sources([tmp_path / "empty.jsonl"])
    (tmp_path / "bad.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(UserError, match="tar"):
        open_sources([tmp_path / "bad.tar"])
    (tmp_path / "obj.json").write_text('{"image": "x"}')
    with pytest.raises(UserError, match="list"):
        open_sources([tmp_path / "obj.json"])


def test_brace_patterns_expand_like_webdataset():
    assert [p.name for p in expand_data_paths(["s/shard-{000000..000002}.tar", "a.jsonl"])] == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
        "a.jsonl",
    ]


@pytest.mark.parametrize("data", ["jsonfiles", "jsonfiles/*.json"])
def test_official_finehard_folder_or_glob_with_an_image_root(tmp_path, data):
    official_finehard(tmp_path)
    source = open_sources([str(tmp_path / data)], images=tmp_path / "grit-12m")
    assert [p.name for p in source.files] == sorted(OFFICIAL_JSON_NAMES)
    assert len(source) == 6
    loaded = source.load(4)
    assert isinstance(loaded, LoadedRecord) and loaded.finehard
    assert loaded.image_path == tmp_path / "grit-12m" / "coyo_image_1" / "00001" / "001000001.jpg"
    assert loaded.open_image().size == (48, 48)
    regions = loaded.record.regions
    assert regions[0].bbox == [0.1, 0.2, 0.5, 0.9] and len(regions[0].hard_negatives) == 10
    assert regions[0].hard_negatives[:2] == ["a black dog", "a white dog"]
    assert regions[1].hard_negatives == [] and regions[1].long_caption == "a tall lamp"
    assert source.duplicate_records == 0


def test_a_finehard_image_missing_under_the_root_is_a_missing_image(tmp_path):
    official_finehard(tmp_path, missing_image=True)
    source = open_sources([tmp_path / "jsonfiles"], images=tmp_path / "grit-12m")
    with pytest.raises(ImageError, match="image not found") as error:
        source.load(5).open_image()
    assert error.value.kind == "missing_image"
    with pytest.raises(UserError, match="--images .*no such folder"):
        open_sources([tmp_path / "jsonfiles"], images=tmp_path / "nowhere")
    with pytest.raises(UserError, match="no file matches"):
        open_sources([str(tmp_path / "jsonfiles" / "*.jsonl")])


def test_relative_paths_of_this_format_follow_images_too(tmp_path):
    write_image(tmp_path / "pictures" / "a.png")
    data = write_jsonl(tmp_path / "records" / "d.jsonl", [record("a.png", 0)])
    assert open_sources([data], images=tmp_path / "pictures").load(0).image_path == tmp_path / "pictures" / "a.png"
    assert open_sources([data]).load(0).image_path == tmp_path / "records" / "a.png"


def test_duplicated_records_are_counted(tmp_path):
    write_image(tmp_path / "a.png")
    lines = [record("a.png", 0), record("a.png", 1), record("a.png", 0)]
    data = write_jsonl(tmp_path / "d.jsonl", lines)
    assert open_sources([data]).duplicate_records == 1
    assert open_sources([data, data]).duplicate_records == 4  # a file given twice: all of it again
    items = official_finehard(tmp_path / "fh")
    (tmp_path / "fh" / "jsonfiles" / "copy.json").write_text(json.dumps(items[:2]))
    assert open_sources([tmp_path / "fh" / "jsonfiles"]).duplicate_records == 2


def test_a_line_that_is_not_utf8_is_one_bad_record(tmp_path):
    from fgclip.data.schema import iter_record_file

    write_image(tmp_path / "a.png")
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        json.dumps(record("a.png", 0)).encode()
        + b"\n"
        + b'{"image": "\xff\xfe"}\n'
        + json.dumps(record("a.png", 1)).encode()
        + b"\n"
    )
    source = open_sources([path])
    assert source.load(1).kind == "malformed_json"
    items = list(iter_record_file(path))
    assert [type(item).__name__ for item in items] == ["Record", "BadRecord", "Record"]
    assert items[1].kind == "malformed_json" and "UTF-8" in items[1].reason
