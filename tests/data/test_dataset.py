"""Samples: image decoding, region picking, the official FineHARD text rules, bad records and substitutes."""

import json

import pytest

from fgclip.data.dataset import FineGrainedDataset
from fgclip.data.readers import ImageError, open_sources
from fgclip.errors import UserError
from tests.data.conftest import record, write_image, write_jsonl
from tests.official_records import finehard_box, finehard_item


def test_sample_has_image_texts_and_the_first_four_regions(good_set):
    dataset = FineGrainedDataset(open_sources([good_set]), image_size=32, with_regions=True)
    sample = dataset[(5, 123)]  # record 5 has 6 regions
    assert sample.pixel_values.shape == (3, 32, 32)
    assert sample.boxes.shape == (4, 4)
    assert sample.region_captions == [f"object {r} of picture 5" for r in range(4)]  # the official loader's rule
    assert len(sample.region_texts) == len(sample.region_captions) == len(sample.hard_negatives) == 4
    for text, caption in zip(sample.region_texts, sample.region_captions):
        assert text == caption or text.startswith("the long expression of " + caption.split(" of ")[0])
    assert all(len(negatives) == 10 for negatives in sample.hard_negatives)
    assert sample.bad is None and sample.first_sighting
    again = dataset[(5, 123)]
    assert again.region_texts == sample.region_texts  # random choices follow the sample seed
    assert {tuple(dataset[(5, seed)].region_texts) for seed in range(20)} != {tuple(sample.region_texts)}
    drawn = FineGrainedDataset(open_sources([good_set]), image_size=32, with_regions=True, region_choice="random")
    choices = {tuple(drawn[(5, seed)].region_captions) for seed in range(20)}
    assert len(choices) > 1  # the random option draws other boxes for other seeds


def test_stage_one_samples_have_no_regions(good_set):
    sample = FineGrainedDataset(open_sources([good_set]), image_size=32, with_regions=False)[3]
    assert sample.boxes.shape == (0, 4) and sample.region_texts == []


def test_negatives_are_distinct_and_never_the_caption(tmp_path, good_set):
    item = record("images/0.png", 0, regions=1)
    item["regions"][0]["hard_negatives"] = [item["regions"][0]["caption"], "a", "a", "b"] + [f"n{i}" for i in range(12)]
    path = write_jsonl(good_set.parent / "negs.jsonl", [item])
    sample = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=True, num_hard_negatives=10)[0]
    assert sample.hard_negatives[0] == ["a", "b"] + [f"n{i}" for i in range(8)]


def test_a_bad_record_is_reported_with_a_random_usable_substitute(good_set):
    lines = good_set.read_text().splitlines()
    lines[2] = json.dumps(record("images/missing.png", 2))
    lines[3] = "{broken"
    path = good_set.parent / "with_bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dataset = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=True)
    missing = dataset[(2, 7, True)]
    assert missing.bad.kind == "missing_image" and missing.bad.source.endswith("with_bad.jsonl:3")
    assert "not found" in missing.bad.reason
    assert missing.first_sighting
    assert missing.long_caption not in (json.loads(lines[2])["long_caption"],)  # another, usable record
    broken = dataset[(3, 7, False)]
    assert broken.bad.kind == "malformed_json" and not broken.first_sighting
    assert dataset[(3, 7)].long_caption == broken.long_caption  # the substitute follows the sample seed
    assert dataset[(4, 7)].bad is None


def test_unusable_data_is_a_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [record(f"missing{i}.png", i) for i in range(5)])
    dataset = FineGrainedDataset(open_sources([path]), image_size=32, with_regions=False, max_substitutes=3)
    with pytest.raises(UserError, match="3 records drawn to replace the bad record .*d.jsonl:1 were all unusable"):
        dataset[0]


def odd_boxes_negated_item(f_path: str, boxes: int = 6) -> dict:
    """One FineHARD item whose odd boxes have ten negatives (flag_short_neg 1), the even ones none."""
    return finehard_item(
        f_path,
        "In the image, a brown dog lies on a grey sofa next to a red cushion and a lamp.",
        "a dog on a sofa",
        [
            finehard_box(
                [0.1 * b, 0.1, 0.1 * b + 0.3, 0.6, 0.91],
                f"object {b}",
                f"the long expression of object {b}",
                [f"not object {b} ({k})" for k in range(10)] if b % 2 else None,
            )
            for b in range(boxes)
        ],
    )


def test_finehard_items_follow_the_official_text_rules(tmp_path):
    write_image(tmp_path / "grit-12m" / "coyo_image_0" / "00000" / "000000001.jpg")
    data = tmp_path / "jsonfiles" / "part.json"
    data.parent.mkdir()
    data.write_text(json.dumps([odd_boxes_negated_item("grit-20m/data-12m/coyo_image_0/00000/000000001.jpg")]))
    source = open_sources([data], images=tmp_path / "grit-12m")
    sample = FineGrainedDataset(source, image_size=32, with_regions=True)[(0, 3)]
    assert sample.short_caption == "a photo of a dog on a sofa"
    assert sample.region_captions == ["object 0", "object 1", "object 2", "object 3"]  # the first four boxes
    assert [len(n) for n in sample.hard_negatives] == [0, 10, 0, 10]  # flag_short_neg 0: no negatives
    plain = FineGrainedDataset(source, image_size=32, with_regions=False, finehard_short_prefix="")[(0, 3)]
    assert plain.short_caption == "a dog on a sofa"
    without_root = open_sources([data]).load(0)  # without --images: next to the JSON file, where it is not
    assert without_root.image_path == data.parent / "coyo_image_0" / "00000" / "000000001.jpg"
    with pytest.raises(ImageError) as error:
        without_root.open_image()
    assert error.value.kind == "missing_image"
