"""RefCOCO refs + instances -> localisation JSONL."""

import json
import pickle

from eval.lmm import refer
from fgclip.cli import run


def test_converts_one_item_per_sentence(tmp_path):
    refs = [
        {
            "ref_id": 7,
            "ann_id": 70,
            "image_id": 1,
            "split": "testA",
            "sentences": [{"sent_id": 1, "sent": "man on left"}, {"sent_id": 2, "sent": "left guy"}],
        },
        {"ref_id": 8, "ann_id": 80, "image_id": 1, "split": "train", "sentences": [{"sent_id": 3, "sent": "x"}]},
        {"ref_id": 9, "ann_id": 99, "image_id": 1, "split": "testA", "sentences": [{"sent_id": 4, "sent": "y"}]},
    ]
    instances = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 200, "height": 100}],
        "annotations": [
            {"id": 70, "image_id": 1, "bbox": [20, 10, 80, 50]},
            {"id": 80, "image_id": 1, "bbox": [0, 0, 5, 5]},
        ],
    }
    with (tmp_path / "refs(unc).p").open("wb") as handle:
        pickle.dump(refs, handle)
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    out = tmp_path / "testA.jsonl"
    refer.main(
        [
            "--refs",
            str(tmp_path / "refs(unc).p"),
            "--instances",
            str(tmp_path / "instances.json"),
            "--split",
            "testA",
            "--out",
            str(out),
        ]
    )
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert items == [
        {
            "id": "7_1",
            "image": "COCO_train2014_000000000001.jpg",
            "expression": "man on left",
            "bbox": [0.1, 0.1, 0.5, 0.6],
            "width": 200,
            "height": 100,
        },
        {
            "id": "7_2",
            "image": "COCO_train2014_000000000001.jpg",
            "expression": "left guy",
            "bbox": [0.1, 0.1, 0.5, 0.6],
            "width": 200,
            "height": 100,
        },
    ]  # ref 9's box is not in the instances: skipped and reported
    assert (
        run(
            refer.main,
            [
                "--refs",
                str(tmp_path / "refs(unc).p"),
                "--instances",
                str(tmp_path / "instances.json"),
                "--split",
                "val",
                "--out",
                str(out),
                "--overwrite",
            ],
        )
        == 2
    )


def test_the_output_file_is_never_an_input_a_folder_or_replaced_unasked(tmp_path, capsys):
    refs, instances = tmp_path / "refs.json", tmp_path / "instances.json"
    refs.write_text(
        json.dumps(
            [
                {
                    "ref_id": 1,
                    "ann_id": 1,
                    "image_id": 1,
                    "split": "val",
                    "sentences": [{"sent_id": 1, "sent": "the dog"}],
                }
            ]
        )
    )
    instances.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 5, 5]}],
            }
        )
    )
    base = ["--refs", str(refs), "--instances", str(instances), "--split", "val"]
    out = tmp_path / "val.jsonl"
    for target, message in ((instances, "is an input"), (tmp_path, "is a folder")):
        assert run(refer.main, [*base, "--out", str(target), "--overwrite"]) == 2
        assert message in capsys.readouterr().err
    refer.main([*base, "--out", str(out)])
    assert run(refer.main, [*base, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --output_file {out} exists; pass --overwrite to replace it"
    refer.main([*base, "--out", str(out), "--overwrite"])
    assert len(out.read_text().splitlines()) == 1
