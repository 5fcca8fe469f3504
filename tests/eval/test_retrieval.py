"""eval.retrieval: every input format, positives by hand (several and duplicated captions), end to end."""

from __future__ import annotations

import json

import pytest

from eval import retrieval
from eval.common.cli import EvalError
from tests.eval.conftest import common_args, make_image, write_jsonl


def test_positive_sets_with_several_and_duplicated_captions():
    captions = [["a dog", "a brown dog"], ["a cat"], ["a dog"]]  # "a dog" belongs to images 0 and 2
    texts, owners, image_positives, text_positives = retrieval.positive_sets(captions)
    assert texts == ["a dog", "a brown dog", "a cat", "a dog"] and owners == [0, 0, 1, 2]
    assert image_positives == [[0, 1, 3], [2], [0, 3]]
    assert text_positives == [[0, 2], [0], [1], [0, 2]]


def test_coco_captions_and_karpathy_files(tmp_path):
    coco = tmp_path / "captions.json"
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "b.jpg"}, {"id": 9, "file_name": "c.jpg"}],
        "annotations": [{"image_id": 8, "caption": "two"}, {"image_id": 7, "caption": "one "},
                        {"image_id": 7, "caption": "uno"}, {"image_id": 5, "caption": "orphan"}]}))
    data = retrieval.load_retrieval_set(coco)
    assert data.format == "coco-captions"
    assert data.image_names == ["a.jpg", "b.jpg"] and data.captions == [["one", "uno"], ["two"]]
    assert data.counts["skipped_malformed"] == 1 and data.counts["images_without_captions"] == 1
    karpathy = tmp_path / "dataset_coco.json"
    karpathy.write_text(json.dumps({"images": [
        {"filepath": "val2014", "filename": "x.jpg", "split": "test", "sentences": [{"raw": "A x."}, {"raw": "An x."}]},
        {"filepath": "val2014", "filename": "y.jpg", "split": "train", "sentences": [{"raw": "A y."}]}]}))
    data = retrieval.load_retrieval_set(karpathy)
    assert data.format == "karpathy" and data.image_names == ["val2014/x.jpg"] and data.captions == [["A x.", "An x."]]
    assert retrieval.load_retrieval_set(karpathy, split="all").image_names == ["val2014/x.jpg", "val2014/y.jpg"]
    with pytest.raises(EvalError, match="no images in split 'val'"):
        retrieval.load_retrieval_set(karpathy, split="val")


def test_jsonl_sharegpt4v_records_and_dci(tmp_path):
    lines = write_jsonl(tmp_path / "pairs.jsonl", [
        {"image": "a.jpg", "caption": "first"}, {"image": "b.jpg", "captions": ["x", "y"]},
        {"image": "a.jpg", "caption": "second"}, {"image": "c.jpg", "caption": "  "}, {"caption": "no image"}])
    data = retrieval.load_retrieval_set(lines)
    assert data.image_names == ["a.jpg", "b.jpg"] and data.captions == [["first", "second"], ["x", "y"]]
    assert data.counts["skipped_empty_caption"] == 1 and data.counts["skipped_malformed"] == 1
    records = write_jsonl(tmp_path / "records.jsonl", [
        {"image": "a.jpg", "short_caption": "short", "long_caption": "a long one", "regions": []}])
    assert retrieval.load_retrieval_set(records).captions == [["short"]]
    assert retrieval.load_retrieval_set(records, long=True).captions == [["a long one"]]
    share = tmp_path / "share.json"
    share.write_text(json.dumps([{"image": f"coco/{i}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": f"caption {i}"}]} for i in range(5)]))
    data = retrieval.load_retrieval_set(share, long=True, limit=3)
    assert data.captions == [["caption 0"], ["caption 1"], ["caption 2"]]
    assert data.counts["images_not_read_limit"] == 2
    dci = tmp_path / "dci"
    dci.mkdir()
    for i in range(2):
        (dci / f"{i}.json").write_text(json.dumps({"image": f"sa_{i}.jpg", "extra_caption": f"dense {i}"}))
    (dci / "bad.json").write_text("{")
    data = retrieval.load_retrieval_set(dci)
    assert data.format == "dci" and data.image_names == ["sa_0.jpg", "sa_1.jpg"]
    assert data.counts["skipped_malformed"] == 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"foo": 1}))
    with pytest.raises(EvalError, match="COCO captions"):
        retrieval.load_retrieval_set(other)


def test_command_end_to_end_short_and_long(tiny_model_dir, tmp_path):
    for i in range(4):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    data = write_jsonl(tmp_path / "pairs.jsonl", [
        {"image": "imgs/0.png", "captions": ["a red car", "a car that is red"]},
        {"image": "imgs/1.png", "caption": "a dog on grass"},
        {"image": "deep/folder/2.png", "caption": "a blue sky"},  # only found by bare name under --images imgs/
        {"image": "imgs/3.png", "caption": "a red car"},  # duplicated caption of image 0
        {"image": "imgs/missing.png", "caption": "a cup"},
    ])
    out = tmp_path / "out"
    result = retrieval.main(["--data", str(data), *common_args(tiny_model_dir, out, tmp_path / "cache")])
    assert result["benchmark"] == "retrieval"
    assert result["num_images"] == 3 and result["num_captions"] == 4
    assert result["counts"]["skipped_images_failed"] == 2 and "scored 3 of 5 images" in result["note"]
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        assert 0.0 <= result[key] <= 1.0
    assert result["i2t_r5"] == 1.0 and result["t2i_r5"] == 1.0  # only 3 images, 4 captions
    assert (out / "recall_curve.png").is_file()
    long = retrieval.main(["--data", str(data), "--long", "--images", str(tmp_path / "imgs"),
                           *common_args(tiny_model_dir, tmp_path / "long", tmp_path / "cache")])
    # with --images imgs/, "imgs/0.png" is not under it but its bare name is; "deep/folder/2.png" too
    assert long["benchmark"] == "retrieval_long" and long["num_images"] == 4 and long["long"] is True
