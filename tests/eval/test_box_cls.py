"""eval.box_cls: COCO instances via pycocotools, crowd/tiny boxes counted, errors as one line."""

from __future__ import annotations

import json

import pytest

from eval import box_cls
from fgclip.cli import run
from fgclip.errors import UserError
from tests.eval.conftest import common_args, make_image
from tests.official_records import COCO_CATEGORIES, coco_file, coco_image, coco_instance


def write_instances(path, images, annotations, categories):
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.fixture
def coco_dir(tmp_path):
    make_image(tmp_path / "val" / "1.png", seed=1, size=(64, 48))
    make_image(tmp_path / "val" / "2.png", seed=2, size=(64, 48))
    images = [
        {"id": 1, "file_name": "1.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "2.png"},
        {"id": 3, "file_name": "gone.png", "width": 64, "height": 48},
        {"id": 4, "file_name": "4.png"},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 10, 30, 30], "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 0, 0.5, 10], "iscrowd": 0},  # tiny
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 1},  # crowd
        {"id": 5, "image_id": 2, "category_id": 3, "bbox": [10, 10, 20, 20]},  # no iscrowd field (LVIS)
        {"id": 6, "image_id": 3, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0},  # image missing
    ]
    categories = [{"id": 1, "name": "hot_dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "dog"}]
    write_instances(tmp_path / "instances.json", images, annotations, categories)
    return tmp_path


def test_boxes_are_collected_with_counted_skips(coco_dir):
    coco = box_cls.load_coco(coco_dir / "instances.json")
    ids, names = box_cls.category_names(coco, None)
    assert ids == [1, 2, 3] and names == ["hot dog", "cat", "dog"]
    boxes = box_cls.collect_boxes(coco, coco_dir / "val", names, ids, 1.0, False, 0)
    assert [p.name for p in boxes.paths] == ["1.png", "2.png", "gone.png"]
    assert boxes.labels == [[0, 1], [2], [0]]
    assert boxes.boxes[0][0] == [4 / 64, 4 / 48, 34 / 64, 24 / 48]
    assert boxes.counts["skipped_tiny"] == 1 and boxes.counts["skipped_crowd"] == 1
    with_crowd = box_cls.collect_boxes(coco, coco_dir / "val", names, ids, 1.0, True, 1)
    assert with_crowd.labels == [[0, 1]] and with_crowd.counts["annotations_not_read_limit"] == 3


def test_instances_val2017_as_shipped(tmp_path):
    """instances_val2017.json: info, licenses, images {license, file_name, coco_url, height, width, date_captured,
    flickr_url, id}, annotations {segmentation, area, iscrowd, image_id, bbox, category_id, id}, categories
    {supercategory, id, name} with the real non-contiguous ids (1 person, 18 dog, 90 toothbrush)."""
    make_image(tmp_path / "val2017" / "000000397133.jpg", seed=3, size=(64, 48))
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.parent.mkdir()
    annotations = [
        coco_instance(82445, 397133, [10.5, 8.25, 30.0, 20.0], 18),
        coco_instance(1, 397133, [0.0, 0.0, 64.0, 48.0], 1),
        coco_instance(82445, 397133, [10.5, 8.25, 30.0, 20.0], 18),  # the same annotation twice
        coco_instance(7, 999, [40.0, 30.0, 10.0, 10.0], 90),  # an image the file does not list
    ]
    path.write_text(json.dumps(coco_file([coco_image(397133, 64, 48)], annotations, COCO_CATEGORIES)))
    coco = box_cls.load_coco(path)
    ids, names = box_cls.category_names(coco, None)
    assert ids == [1, 18, 90] and names == ["person", "dog", "toothbrush"]
    boxes = box_cls.collect_boxes(coco, tmp_path / "val2017", names, ids, 1.0, False, 0)
    assert [p.name for p in boxes.paths] == ["000000397133.jpg"]
    assert boxes.labels == [[1, 0]] and boxes.boxes[0][0] == [10.5 / 64, 8.25 / 48, 40.5 / 64, 28.25 / 48]
    assert boxes.counts["duplicate_annotations"] == 1 and boxes.counts["skipped_unknown_image"] == 1


def test_command_end_to_end(tiny_model_dir, coco_dir):
    out = coco_dir / "out"
    result = box_cls.main(
        [
            "--data",
            str(coco_dir / "instances.json"),
            "--images",
            str(coco_dir / "val"),
            "--templates",
            "photo",
            "--per-class",
            *common_args(tiny_model_dir, out),
        ]
    )
    assert result["num_boxes"] == 3 and result["num_classes"] == 3
    assert result["counts"]["skipped_missing_image"] == 1 and result["complete"] is False
    assert result["top1"] <= result["top5"] == 1.0  # 3 classes: every box is within the top 5
    assert set(result["details"]["per_class"]) == {"hot dog", "cat", "dog"}
    assert (out / "box_cls.png").is_file() and "| hot dog | 1 |" in (out / "results.md").read_text()


def test_classnames_override_and_errors(tiny_model_dir, coco_dir, tmp_path, capsys):
    coco = box_cls.load_coco(coco_dir / "instances.json")
    (tmp_path / "names.json").write_text(json.dumps({"1": "frankfurter", "2": "kitten", "3": "puppy"}))
    assert box_cls.category_names(coco, tmp_path / "names.json")[1] == ["frankfurter", "kitten", "puppy"]
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="2 names for 3 categories"):
        box_cls.category_names(coco, tmp_path / "two.txt")
    (tmp_path / "broken.json").write_text('{"images": [')
    args = common_args(tiny_model_dir, tmp_path / "out")
    assert run(box_cls.main, ["--data", str(tmp_path / "broken.json"), *args]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    write_instances(
        tmp_path / "nocats.json",
        [{"id": 1, "file_name": "a.png"}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
        [],
    )
    with pytest.raises(UserError, match="no categories"):
        box_cls.main(["--data", str(tmp_path / "nocats.json"), *args])
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(UserError, match="not a COCO annotation file"):
        box_cls.main(["--data", str(tmp_path / "list.json"), *args])
