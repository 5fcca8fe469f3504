"""eval.retrieval: every input format, positives by hand (several and duplicated captions), end to end."""

from __future__ import annotations

import json

import pytest

from eval import retrieval
from eval.common.coverage import skipped_reasons
from fgclip.errors import UserError
from tests.eval.conftest import common_args, make_image, write_jsonl
from tests.official_records import coco_file, coco_image, dci_annotation, karpathy_image, sharegpt4v_caption


def test_positive_sets_with_several_and_duplicated_captions():
    captions = [["a dog", "a brown dog"], ["a cat"], ["a dog"]]  # "a dog" belongs to images 0 and 2
    texts, owners, image_positives, text_positives = retrieval.positive_sets(captions)
    assert texts == ["a dog", "a brown dog", "a cat", "a dog"] and owners == [0, 0, 1, 2]
    assert image_positives == [[0, 1, 3], [2], [0, 3]]
    assert text_positives == [[0, 2], [0], [1], [0, 2]]


MOPED = ["A man with a red helmet on a small moped on a dirt road. ", "Man riding a motor bike."]


def test_karpathy_dataset_coco_as_shipped(tmp_path):
    """dataset_coco.json: `images` of {filepath, sentids, filename, imgid, split, sentences[{tokens, raw, imgid,
    sentid}], cocoid} and "dataset": "coco"; splits train / val / test / restval; `raw` keeps its trailing space."""
    path = tmp_path / "dataset_coco.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    karpathy_image("val2014", "COCO_val2014_000000391895.jpg", "test", 0, 391895, MOPED, 770337),
                    karpathy_image(
                        "val2014",
                        "COCO_val2014_000000522418.jpg",
                        "restval",
                        1,
                        522418,
                        ["A woman wearing a net on her head cutting a cake. "],
                        681330,
                    ),
                    karpathy_image(
                        "train2014",
                        "COCO_train2014_000000057870.jpg",
                        "train",
                        2,
                        57870,
                        ["A restaurant has modern wooden tables and chairs."],
                        787980,
                    ),
                    karpathy_image(
                        "val2014",
                        "COCO_val2014_000000184613.jpg",
                        "val",
                        3,
                        184613,
                        ["A child holding a flowered umbrella."],
                        1000,
                    ),
                    karpathy_image("val2014", "COCO_val2014_000000391895.jpg", "test", 0, 391895, MOPED, 770337),
                ],  # again
                "dataset": "coco",
            }
        )
    )
    data = retrieval.load_retrieval_set(path)
    assert data.format == "karpathy"
    assert data.image_names == ["val2014/COCO_val2014_000000391895.jpg"]
    assert data.captions == [["A man with a red helmet on a small moped on a dirt road.", "Man riding a motor bike."]]
    assert data.counts["duplicate_records"] == 1 and data.given == 1
    assert retrieval.load_retrieval_set(path, split="restval").image_names == ["val2014/COCO_val2014_000000522418.jpg"]
    train = retrieval.load_retrieval_set(path, split="train")
    assert train.image_names == ["train2014/COCO_train2014_000000057870.jpg"]
    assert len(retrieval.load_retrieval_set(path, split="all").image_names) == 4
    flickr = tmp_path / "dataset_flickr30k.json"  # Flickr30k's file has no filepath and no cocoid
    guys = ["Two young guys with shaggy hair look at their hands."]
    flickr.write_text(
        json.dumps(
            {"images": [karpathy_image(None, "1000092795.jpg", "test", 0, None, guys, 0)], "dataset": "flickr30k"}
        )
    )
    assert retrieval.load_retrieval_set(flickr).image_names == ["1000092795.jpg"]
    with pytest.raises(UserError, match="no images in split 'val'; its splits are test"):
        retrieval.load_retrieval_set(flickr, split="val")


def test_coco_captions_file_as_shipped(tmp_path):
    """captions_val2017.json: info, licenses, images with int ids, annotations {image_id, id, caption}."""
    coco = tmp_path / "captions_val2017.json"
    coco.write_text(
        json.dumps(
            coco_file(
                [coco_image(image_id, 640, 427) for image_id in (397133, 37777, 252219)],
                [
                    {"image_id": 37777, "id": 2, "caption": "The dining table near the kitchen has a bowl of fruit."},
                    {"image_id": 397133, "id": 370, "caption": "A man is in a kitchen making pizzas. "},
                    {"image_id": 397133, "id": 3, "caption": "Man in apron standing on front of oven."},
                    {"image_id": 397133, "id": 370, "caption": "A man is in a kitchen making pizzas. "},
                    {"image_id": 5, "id": 9, "caption": "orphan"},
                ],
            )
        )
    )
    data = retrieval.load_retrieval_set(coco)
    assert data.format == "coco-captions"
    assert data.image_names == ["000000397133.jpg", "000000037777.jpg"]
    assert data.captions[0] == ["A man is in a kitchen making pizzas.", "Man in apron standing on front of oven."]
    assert data.counts["duplicate_records"] == 1
    assert skipped_reasons(data.counts) == {"malformed_caption": 1, "no_caption": 1} and data.given == 3


def test_sharegpt4v_list_as_shipped_and_the_first_1000(tmp_path):
    """share-captioner_coco_lcs_sam_1246k_1107.json: a JSON list of {id, image, conversations}; the caption is
    the gpt turn; ShareGPT4V-1k is the first N items (here 3)."""
    share = tmp_path / "share-captioner_coco_lcs_sam_1246k_1107.json"
    images = [
        "coco/train2017/000000000009.jpg",
        "sam/images/sa_227.jpg",
        "llava/llava_pretrain/images/00013/000138014.jpg",
        "coco/train2017/000000000025.jpg",
        "coco/train2017/000000000030.jpg",
    ]
    share.write_text(
        json.dumps(
            [
                sharegpt4v_caption(name, f"In the center of the image, item {i}.\n\nA second paragraph.")
                for i, name in enumerate(images)
            ],
            indent=1,
        )
    )
    data = retrieval.load_retrieval_set(share, long=True, limit=3)
    assert data.image_names == images[:3]
    assert data.captions[1] == ["In the center of the image, item 1.\n\nA second paragraph."]
    assert data.counts["images_not_read_limit"] == 2 and data.given == 3


def test_dci_folders_as_shipped(tmp_path):
    """densely_captioned_images/annotations/*.json with `image` relative to the sibling photos/ folder;
    the caption is DCI's extended caption (short_caption + newline + extra_caption)."""
    root = tmp_path / "densely_captioned_images"
    (root / "annotations").mkdir(parents=True)
    (root / "photos").mkdir()
    for i in range(2):
        (root / "annotations" / f"sa_{i}.json").write_text(
            json.dumps(dci_annotation(f"sa_{i}.jpg", f"A standard caption {i}.", f"Dense description {i}."))
        )
    (root / "annotations" / "broken.json").write_text("{")
    (root / "annotations" / "no_image.json").write_text(json.dumps({"short_caption": "x"}))
    data = retrieval.load_retrieval_set(root / "annotations", long=True)
    assert data.format == "dci" and data.image_names == ["sa_0.jpg", "sa_1.jpg"]
    assert data.captions[0] == ["A standard caption 0.\nDense description 0."]
    assert data.counts["skipped_malformed"] == 2 and data.given == 4
    assert retrieval.dci_images_root(root / "annotations") == root / "photos"
    extra = retrieval.load_retrieval_set(root / "annotations", caption_field="extra_caption")
    assert extra.captions == [["Dense description 0."], ["Dense description 1."]]


def test_items_malformed_caption_less_and_duplicated_are_counted(tmp_path):
    """issue 15: 6 items given, 2 unusable: 'all 4 images scored' was reported; now 4 of 6, by reason."""
    lines = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"image": "a.jpg", "caption": "first"},
            {"image": "b.jpg", "captions": ["x", "y"]},
            {"image": "a.jpg", "caption": "second"},
            {"image": "c.jpg", "caption": "  "},
            {"caption": "no image"},
            {"image": "d.jpg", "caption": "d"},
            {"image": "a.jpg", "caption": "first"},
        ],
    )
    with lines.open("ab") as handle:
        handle.write(b'{"image": "e.jpg", "caption": "caf\xe9"}\n')  # Latin-1 bytes: not UTF-8
    data = retrieval.load_retrieval_set(lines)
    assert data.image_names == ["a.jpg", "b.jpg", "d.jpg"] and data.captions == [["first", "second"], ["x", "y"], ["d"]]
    assert skipped_reasons(data.counts) == {"malformed": 2, "no_caption": 1}
    assert data.counts["duplicate_records"] == 1 and data.given == 6
    records = write_jsonl(
        tmp_path / "records.jsonl",
        [{"image": "a.jpg", "short_caption": "short", "long_caption": "a long one", "regions": []}],
    )
    assert retrieval.load_retrieval_set(records).captions == [["short"]]
    assert retrieval.load_retrieval_set(records, long=True).captions == [["a long one"]]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"foo": 1}))
    with pytest.raises(UserError, match="COCO captions"):
        retrieval.load_retrieval_set(other)


def test_command_end_to_end_short_and_long(tiny_model_dir, tmp_path):
    for i in range(4):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    data = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"image": "imgs/0.png", "captions": ["a red car", "a car that is red"]},
            {"image": "imgs/1.png", "caption": "a dog on grass"},
            {"image": "deep/folder/2.png", "caption": "a blue sky"},  # only found by bare name under --images imgs/
            {"image": "imgs/3.png", "caption": "a red car"},  # duplicated caption of image 0
            {"image": "imgs/missing.png", "caption": "a cup"},
        ],
    )
    out = tmp_path / "out"
    result = retrieval.main(["--data", str(data), *common_args(tiny_model_dir, out, tmp_path / "cache")])
    assert result["benchmark"] == "retrieval"
    assert result["num_images"] == 3 and result["num_captions"] == 4
    assert result["counts"]["skipped_missing_image"] == 2 and "scored 3 of 5 images" in result["note"]
    assert result["complete"] is False and result["coverage"]["skipped"] == {"missing_image": 2}
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        assert 0.0 <= result[key] <= 1.0
    assert result["i2t_r5"] == 1.0 and result["t2i_r5"] == 1.0  # only 3 images, 4 captions
    assert (out / "recall_curve.png").is_file()
    long = retrieval.main(
        [
            "--data",
            str(data),
            "--long",
            "--images",
            str(tmp_path / "imgs"),
            *common_args(tiny_model_dir, tmp_path / "long", tmp_path / "cache"),
        ]
    )
    # with --images imgs/, "imgs/0.png" is not under it but its bare name is; "deep/folder/2.png" too
    assert long["benchmark"] == "retrieval_long" and long["num_images"] == 4 and long["long"] is True
