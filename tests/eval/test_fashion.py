"""eval.fashion: FashionGen full / sample-100 and FashionIQ protocols by hand, fusion, end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from eval import fashion
from eval.common.fashion_data import ProductItem, category_from_name, load_gallery, load_triplets
from fgclip.errors import UserError
from tests.eval.conftest import common_args, make_image, write_jsonl


def product_index(specs):
    """specs: (image, text, product, subcategory); every image readable."""
    items = [ProductItem(*spec) for spec in specs]
    paths = [Path(item.image) for item in items]
    return fashion.build_product_index(items, paths, {p: True for p in paths}, Counter())


def test_full_mode_counts_any_image_of_the_product():
    index = product_index(
        [("a1", "red dress", "A", "dress"), ("a2", "red dress", "A", "dress"), ("b1", "blue shirt", "B", "shirt")]
    )
    assert index.product_images == {"A": [0, 1], "B": [2]} and index.texts == ["red dress", "blue shirt"]
    # image a2 is far from "red dress" but a1 is close: T->I is a hit at 1, I->T for a2 a miss at 1
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scores = fashion.full_mode(index, images, texts)
    assert scores["full_t2i_r1"] == 0.5  # "red dress" -> a1 (hit); "blue shirt" -> a2 ties b1 (miss)
    assert scores["full_i2t_r1"] == pytest.approx(2 / 3)  # a1 hit, a2 -> "blue shirt" (miss), b1 hit


def test_sample100_negatives_come_from_the_same_subcategory_first_and_are_seeded():
    specs = [(f"{p}.png", f"text {p}", p, "dress" if p < "m" else "shirt") for p in "abcdefghmnopq"]
    specs.append(("twin.png", "text a", "twin", "dress"))  # same text as product a: never a negative of a
    index = product_index(specs)
    queries = fashion.sample_queries(index, num_queries=50, num_negatives=4, seed=3)
    assert len(queries) == len(index.pairs) == 14
    for query in queries:
        product = index.pairs[[p[:2] for p in index.pairs].index((query.image, query.text))][2]
        negatives = [index.image_product[i] for i in query.negative_images]
        assert product not in negatives and len(set(negatives)) == 4 == len(set(query.negative_texts))
        assert [index.product_texts[p][0] for p in negatives] == query.negative_texts
        if index.product_subcategory[product] == "dress":
            assert all(index.product_subcategory[p] == "dress" for p in negatives)  # 8 dress products available
        if index.texts[query.text] == "text a":
            assert "a" not in negatives and "twin" not in negatives
    again = fashion.sample_queries(index, num_queries=50, num_negatives=4, seed=3)
    assert [(q.image, q.negative_images) for q in again] == [(q.image, q.negative_images) for q in queries]
    few = fashion.sample_queries(index, num_queries=2, num_negatives=100, seed=0)
    # 13 other products but "a" and "twin" share one description: at most 12 distinct negatives
    assert len(few) == 2 and all(len(q.negative_texts) == len(set(q.negative_texts)) <= 12 for q in few)


def test_sample100_ranks_the_positive_against_its_own_candidates():
    queries = [
        fashion.SampledQuery(image=0, text=0, negative_texts=[1, 2], negative_images=[1, 2]),
        fashion.SampledQuery(image=1, text=1, negative_texts=[0], negative_images=[0]),
    ]
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    scores = fashion.sample100_mode(queries, images, texts)
    # image 0: its text scores 1.0 but negative text 2 ties it (a miss); image 1: 1.0 against 0.0 (a hit)
    assert scores["s100_i2t_r1"] == 0.5 and scores["s100_i2t_r5"] == 1.0
    # text 0: image 0 scores 1.0 against 0.0 and 0.6; text 1: image 1 scores 1.0 against 0.0
    assert scores["s100_t2i_r1"] == 1.0


def test_fashioniq_scores_exclude_the_reference_by_default():
    # the query is closest to the reference itself (1.0), then 9 distractors (0.9), then the target (0.85)
    names = ["ref"] + [f"d{i}" for i in range(9)] + ["target"]
    gallery = [Path(n) for n in names]
    scores = [1.0] + [0.9] * 9 + [0.85]
    gallery_embeds = torch.tensor([[s, (1 - s * s) ** 0.5] for s in scores])
    query = torch.tensor([[1.0, 0.0]])
    triplets = [fashion.Triplet("ref", "target", "is darker", "dress")]
    paths = {n: Path(n) for n in names}
    counts = Counter()
    excluded = fashion.iq_scores(triplets, gallery, gallery_embeds, query, paths, keep_reference=False, counts=counts)
    assert excluded == {"r10": 1.0, "r50": 1.0, "queries": 1, "gallery": 11}  # rank 9 without the reference
    kept = fashion.iq_scores(triplets, gallery, gallery_embeds, query, paths, keep_reference=True, counts=counts)
    assert kept["r10"] == 0.0 and kept["r50"] == 1.0  # rank 10 with it
    missing = fashion.iq_scores(
        [fashion.Triplet("ref", "gone", "x", "dress")],
        gallery,
        gallery_embeds,
        query,
        {**paths, "gone": Path("gone")},
        False,
        counts,
    )
    assert missing is None and counts["skipped_target_not_in_gallery"] == 1


def test_fashioniq_files(tmp_path):
    assert category_from_name(Path("cap.toptee.val.json")) == "toptee"
    (tmp_path / "cap.dress.val.json").write_text(
        json.dumps(
            [
                {"candidate": "B1", "target": "B2", "captions": ["is red", "  has no sleeves"]},
                {"candidate": "B1", "target": "B3", "captions": []},
            ]
        )
    )
    loaded = load_triplets([tmp_path / "cap.dress.val.json"])
    assert [(t.text, t.category) for t in loaded.items] == [("is red and has no sleeves", "dress")]
    assert loaded.counts["skipped_empty_text"] == 1
    (tmp_path / "split.dress.val.json").write_text(json.dumps(["B1", "B2", "B1"]))
    write_jsonl(tmp_path / "gallery.jsonl", [{"image": "S1", "category": "shirt"}])
    assert load_gallery([tmp_path / "split.dress.val.json", tmp_path / "gallery.jsonl"]) == {
        "dress": ["B1", "B2"],
        "shirt": ["S1"],
    }


def test_fashiongen_and_fashioniq_end_to_end(tiny_model_dir, tmp_path):
    lines = []
    for p in range(5):
        for view in range(2):
            make_image(tmp_path / "img" / f"P{p}_{view}.png", seed=10 * p + view)
            lines.append(
                {
                    "image": f"img/P{p}_{view}.png",
                    "text": f"product {p}: a {['red', 'blue'][p % 2]} coat",
                    "product_id": f"P{p}",
                    "subcategory": ["COATS", "JACKETS"][p % 2],
                }
            )
    lines += [{"image": "img/lost.png", "text": "lost", "product_id": "L"}, {"image": "img/P0_0.png"}]
    data = write_jsonl(tmp_path / "fashiongen.jsonl", lines)
    out = tmp_path / "gen"
    result = fashion.main(
        [
            "--task",
            "fashiongen",
            "--data",
            str(data),
            "--embedding",
            "both",
            "--num-negatives",
            "3",
            "--num-queries",
            "6",
            *common_args(tiny_model_dir, out),
        ]
    )
    assert result["num_images"] == 10 and result["num_products"] == 5 and result["s100_queries"] == 6
    for key in ("full_i2t_r1", "full_t2i_r10", "s100_i2t_r1", "fusion_full_i2t_r1", "fusion_s100_t2i_r5"):
        assert 0.0 <= result[key] <= 1.0
    assert result["full_t2i_r5"] == 1.0  # 5 descriptions, each with 2 images among 10: the top 5 holds one
    assert result["counts"]["skipped_malformed"] == 1 and result["counts"]["skipped_image_failed"] == 1
    assert result["fusion"]["image_ratio"] == 0.05 and (out / "fashiongen.png").is_file()

    (tmp_path / "cap.dress.val.json").write_text(
        json.dumps(
            [
                {"candidate": "P0_0", "target": "P0_1", "captions": ["is longer", "is red"]},
                {"candidate": "P1_0", "target": "P2_1", "captions": ["is blue"]},
            ]
        )
    )
    (tmp_path / "cap.shirt.val.json").write_text(
        json.dumps([{"candidate": "P3_0", "target": "P3_1", "captions": ["has buttons"]}])
    )
    iq = fashion.main(
        [
            "--task",
            "fashioniq",
            "--data",
            str(tmp_path / "cap.dress.val.json"),
            str(tmp_path / "cap.shirt.val.json"),
            "--images",
            str(tmp_path / "img"),
            "--embedding",
            "both",
            *common_args(tiny_model_dir, tmp_path / "iq"),
        ]
    )
    assert iq["num_queries"] == 3 and iq["dress_r50"] == 1.0 and iq["shirt_r10"] == 1.0  # tiny galleries
    assert "fusion_avg_r10" in iq and iq["gallery"] == "references and targets of the data"
    (tmp_path / "split.dress.val.json").write_text(json.dumps(["P0_0", "P0_1"]))
    with pytest.raises(UserError, match="no images for category 'shirt'"):
        fashion.main(
            [
                "--task",
                "fashioniq",
                "--data",
                str(tmp_path / "cap.dress.val.json"),
                str(tmp_path / "cap.shirt.val.json"),
                "--gallery",
                str(tmp_path / "split.dress.val.json"),
                "--images",
                str(tmp_path / "img"),
                *common_args(tiny_model_dir, tmp_path / "iq2"),
            ]
        )


def test_repeated_lines_and_triplets_are_scored_once_and_counted(tmp_path):
    counts = Counter()
    items = [
        ProductItem("a.png", "red dress", "A", "dress"),
        ProductItem("a.png", "red dress", "A", "dress"),
        ProductItem("b.png", "blue shirt", "B", "shirt"),
    ]
    paths = [Path(item.image) for item in items]
    index = fashion.build_product_index(items, paths, {p: True for p in paths}, counts)
    assert len(index.pairs) == 2 and counts["duplicate_items"] == 1
    triplet = {"candidate": "B00006M009", "target": "B00006M00B", "captions": ["is darker", "has long sleeves"]}
    path = tmp_path / "cap.dress.val.json"
    path.write_text(json.dumps([triplet, triplet, {**triplet, "target": "B0000X"}]))
    loaded = load_triplets([path])
    assert len(loaded.items) == 2 and loaded.counts["duplicate_triplets"] == 1
