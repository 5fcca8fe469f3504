"""eval.fgovd: both input formats read as they are, the tie rule by hand, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eval import fgovd
from eval.common.coverage import skipped_reasons
from fgclip.cli import run
from fgclip.errors import UserError
from fgclip.metrics import candidate_scores, region_top1_hits
from tests.conftest import command_error
from tests.eval.conftest import common_args, make_image, write_jsonl
from tests.official_records import fgovd_annotation, fgovd_category, fgovd_image


def fgovd_line(image, bbox, positive, negatives, size=(48, 40)):
    item = {"img_path": image, "bbox": bbox, "pos_expression": positive, "neg_expression": negatives}
    if size:
        item.update(width=size[0], height=size[1])
    return item


def test_difficulty_labels_from_public_file_names():
    assert fgovd.difficulty_label(Path("1_attributes_llava.jsonl")) == "hard"
    assert fgovd.difficulty_label(Path("2_attributes.jsonl")) == "medium"
    assert fgovd.difficulty_label(Path("3_attributes.jsonl")) == "easy"
    assert fgovd.difficulty_label(Path("shuffle_negatives.jsonl")) == "trivial"
    assert fgovd.difficulty_label(Path("my_Hard_set.jsonl")) == "hard"
    assert fgovd.difficulty_label(Path("mine.jsonl")) == "mine"


def test_public_format_is_read_as_it_is(tmp_path):
    make_image(tmp_path / "imgs" / "a.png", size=(48, 40))
    data = write_jsonl(
        tmp_path / "hard.jsonl",
        [
            fgovd_line("imgs/a.png", [12, 4, 24, 20], ["a red car"], ["a blue car", "a red car", "a green car"]),
            fgovd_line("imgs/a.png", [0, 0, 48, 40], "a dog", ["a cat"], size=None),  # size read from the image
            fgovd_line("imgs/a.png", [0, 0, 48, 40], "a dog", []),
            fgovd_line("imgs/a.png", [60, 50, 5, 5], "a dog", ["a cat"]),  # outside the image
        ],
    )
    (tmp_path / "hard.jsonl").write_text(data.read_text() + "{not json\n")
    loaded = fgovd.load_region_file(data, tmp_path, "hard")
    first, second = loaded.queries
    assert first.positive == "a red car" and first.negatives == ["a blue car", "a green car"]
    assert first.box == [0.25, 0.1, 0.75, 0.6]
    assert second.box == [0.0, 0.0, 1.0, 1.0]
    assert dict(loaded.counts) == {
        "items": 5,
        "regions_in_file": 5,
        "dropped_negatives_equal_to_positive": 1,
        "skipped_no_negatives": 1,
        "skipped_bad_box": 1,
        "skipped_malformed": 1,
    }


def test_record_format_regions_are_skipped_one_by_one(tmp_path):
    """One bad box skips that region only, never the rest of its record (issue 15: 14 of 17 said 'all 14')."""
    data = write_jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "image": "x.png",
                "regions": [
                    {"bbox": [0.1, 0.1, 0.5, 0.5], "caption": "a red cube", "hard_negatives": ["a blue cube"]},
                    {"bbox": [0.5, 0.5, 0.4, 0.9], "caption": "bad box", "hard_negatives": ["x"]},
                    {"bbox": [0.2, 0.2, 0.6, 0.6], "caption": "", "hard_negatives": ["x"]},
                    {"bbox": [0.5, 0.5, 0.9, 0.9], "caption": "a ball"},
                    {"bbox": [0.1, 0.2, 0.3, 0.4], "caption": "a green cube", "hard_negatives": ["a red cube"]},
                ],
            },
            {
                "image": "y.png",
                "regions": [
                    {"bbox": [0.5, 0.5, 0.4, 0.9], "caption": "bad box"},
                    {"bbox": [0.0, 0.0, 1.0, 1.0], "caption": "a sky", "hard_negatives": ["sea"]},
                ],
            },
            {"regions": [{"bbox": [0.0, 0.0, 1.0, 1.0], "caption": "no image", "hard_negatives": ["a"]}]},
        ],
    )
    loaded = fgovd.load_region_file(data, tmp_path, "records")
    assert [(q.image.name, q.positive) for q in loaded.queries] == [
        ("x.png", "a red cube"),
        ("x.png", "a green cube"),
        ("y.png", "a sky"),
    ]
    assert loaded.counts["regions_in_file"] == 8 and loaded.given == 8
    assert skipped_reasons(loaded.counts) == {"bad_box": 2, "malformed": 2, "no_negatives": 1}


def test_public_fgovd_benchmark_document_as_shipped(tmp_path):
    """lorebianchi98/FG-OVD `benchmarks/*.json` (checked against its gt/3_attributes.json): one LVIS-style
    document, int ids, `file_name` "val2017/<12 digits>.jpg" under the COCO root, pixel [x, y, w, h] boxes,
    the captions as category names, the negatives as `neg_category_ids` of each annotation."""
    make_image(tmp_path / "coco" / "val2017" / "000000056288.jpg", size=(64, 48))
    document = {
        "images": [fgovd_image(56288, 64, 48, negatives=[12, 13], not_exhaustive=[11])],
        "annotations": [
            fgovd_annotation(14447, 56288, [16.0, 12.0, 32.0, 24.0], 11, [12, 13]),
            fgovd_annotation(14448, 56288, [0.0, 0.0, 64.0, 48.0], 11, [12, 99]),  # 99: no such category
            fgovd_annotation(14449, 56288, [80.0, 60.0, 4.0, 4.0], 11, [12]),  # outside the image
            fgovd_annotation(14450, 56288, [16.0, 12.0, 32.0, 24.0], 11, [12, 13]),  # the first region again
        ],
        "categories": [
            fgovd_category(11, "A dark blue striped wool basket", instances=1),
            fgovd_category(12, "A dark green dotted text basket", instances=0),
            fgovd_category(13, "A light orange plain paper basket", instances=0),
        ],
    }
    path = tmp_path / "3_attributes.json"
    path.write_text(json.dumps(document))
    loaded = fgovd.load_region_file(path, tmp_path / "coco", fgovd.difficulty_label(path))
    assert loaded.label == "easy"
    (query,) = loaded.queries
    assert query.image == tmp_path / "coco" / "val2017" / "000000056288.jpg"
    assert query.box == [0.25, 0.25, 0.75, 0.75]
    assert query.positive == "A dark blue striped wool basket"
    assert query.negatives == ["A dark green dotted text basket", "A light orange plain paper basket"]
    assert loaded.counts["regions_in_file"] == 4 and loaded.counts["duplicate_regions"] == 1 and loaded.given == 3
    assert skipped_reasons(loaded.counts) == {"unknown_category": 1, "bad_box": 1}


def test_fgclip_jsonl_form_in_a_json_file(tmp_path):
    """FG-CLIP's `*_llava.jsonl` lines (positive as a one-item list, no width/height) also read from a .json name."""
    make_image(tmp_path / "val2017" / "000000000139.jpg", size=(40, 40))
    path = write_jsonl(
        tmp_path / "1_attributes.json",
        [
            {
                "img_path": "val2017/000000000139.jpg",
                "bbox": [0, 0, 20, 20],
                "pos_expression": ["a red chair"],
                "neg_expression": ["a blue chair", "a green chair"],
            },
            {
                "img_path": "val2017/000000000139.jpg",
                "bbox": [0, 0, 40, 40],
                "pos_expression": ["a table"],
                "neg_expression": ["a desk"],
            },
        ],
    )
    loaded = fgovd.load_region_file(path, tmp_path, "hard")
    assert [(q.positive, q.box) for q in loaded.queries] == [
        ("a red chair", [0.0, 0.0, 0.5, 0.5]),
        ("a table", [0.0, 0.0, 1.0, 1.0]),
    ]


def test_score_regions_uses_the_one_region_rule_ties_are_hits():
    queries = [
        fgovd.RegionQuery(Path("i"), [0, 0, 1, 1], "pos", ["neg1", "neg2"]),
        fgovd.RegionQuery(Path("i"), [0, 0, 1, 1], "pos", ["same"]),
        fgovd.RegionQuery(Path("i"), [0, 0, 1, 1], "pos", ["neg2"]),
    ]
    texts = {"pos": 0, "neg1": 1, "neg2": 2, "same": 3}
    text_embeds = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    regions = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # region 0: pos 1.0 beats 0.0 and 0.6; region 1: pos ties "same" (an equal vector): a hit, as in the public
    # FG-OVD evaluation; region 2: 0.8 > 0.0
    hits, ties = fgovd.score_regions(regions, queries, texts, text_embeds)
    assert hits.tolist() == [True, True, False] and ties.tolist() == [False, True, False]
    columns = [[0, 1, 2], [0, 3], [0, 2]]
    assert hits.tolist() == region_top1_hits(candidate_scores(regions, text_embeds, columns)).tolist()


def test_a_negative_cut_to_the_positive_by_the_token_window_ties_and_counts_as_a_hit(tiny_model_dir, tmp_path):
    """Two captions that differ only past the 77-token window encode to one vector: the region ties, and the
    tie is a hit (counted in num_ties), the public FG-OVD rule (fgclip.metrics.region_top1_hits)."""
    make_image(tmp_path / "a.png", seed=3)
    long = "a red car " + "parked on a quiet street near a tall old building " * 10
    data = write_jsonl(
        tmp_path / "ties.jsonl", [fgovd_line("a.png", [2, 2, 30, 30], long + "at noon", [long + "at night"])]
    )
    result = fgovd.main(["--data", str(data), *common_args(tiny_model_dir, tmp_path / "out")])
    assert result["top1"] == 1.0 and result["num_ties"] == 1 and result["num_regions"] == 1
    assert "| ties | 1 | 1 | 1.0000 | 1.0000 | 0.5000 | 1 |" in (tmp_path / "out" / "results.md").read_text()


def test_command_end_to_end_with_difficulties_cache_and_plot(tiny_model_dir, tmp_path):
    make_image(tmp_path / "imgs" / "a.png", seed=1)
    make_image(tmp_path / "imgs" / "b.png", seed=2)
    lines = [
        fgovd_line("imgs/a.png", [2, 2, 30, 30], "a red car", ["a blue car", "a green car"]),
        fgovd_line("imgs/b.png", [0, 0, 40, 40], "a small dog", ["a large dog", "a small cat"]),
        fgovd_line("imgs/missing.png", [0, 0, 10, 10], "a cup", ["a mug"]),
    ]
    hard = write_jsonl(tmp_path / "1_attributes.jsonl", lines)
    easy = write_jsonl(tmp_path / "3_attributes.jsonl", lines[:2])
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = fgovd.main(["--data", str(hard), str(easy), *common_args(tiny_model_dir, out, cache)])
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "fgovd" and saved == result
    assert saved["num_regions"] == 4 and 0.0 <= saved["top1"] <= 1.0
    assert saved["num_regions_hard"] == 2 and saved["num_regions_easy"] == 2
    assert saved["counts"]["skipped_missing_image"] == 1 and saved["complete"] is False
    assert "scored 4 of 5 regions" in saved["note"]
    per_file = saved["details"]["per_file"]
    assert saved["top1"] == (per_file["hard"]["correct"] + per_file["easy"]["correct"]) / 4
    assert (out / "fgovd_top1.png").stat().st_size > 0 and "| hard | 2 | 3 |" in (out / "results.md").read_text()
    assert saved["cache"]["hits"] == 0
    again = fgovd.main(["--data", str(hard), str(easy), *common_args(tiny_model_dir, tmp_path / "out2", cache)])
    assert again["cache"]["hits"] == 2 and again["cache"]["misses"] == 0 and again["top1"] == saved["top1"]


def test_errors_are_one_line_with_exit_code_2(tiny_model_dir, tmp_path, capsys):
    args = common_args(tiny_model_dir, tmp_path / "out")
    assert run(fgovd.main, ["--data", str(tmp_path / "absent.jsonl"), *args]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --data")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="holds no items"):
        fgovd.main(["--data", str(empty), *args])
    only_missing = write_jsonl(tmp_path / "m.jsonl", [fgovd_line("nope.png", [0, 0, 5, 5], "a", ["b"])])
    with pytest.raises(UserError, match="m.jsonl: no region could be scored \\({'skipped_missing_image': 1}\\)"):
        fgovd.main(["--data", str(only_missing), *args])
    make_image(tmp_path / "ok.png")
    fine = write_jsonl(tmp_path / "fine.jsonl", [fgovd_line("ok.png", [0, 0, 5, 5], "a", ["b"])])
    with pytest.raises(UserError, match="m.jsonl: no region could be scored"):  # one file empty among several
        fgovd.main(["--data", str(fine), str(only_missing), *args])
    with pytest.raises(UserError, match="--names has 2 labels"):
        fgovd.main(["--data", str(only_missing), "--names", "a", "b", *args])


@pytest.mark.slow
def test_module_runs_as_a_command(tmp_path):
    """`python -m eval.fgovd` with a bad path: exit code 2 and one line, no traceback."""
    error = command_error(
        "eval.fgovd", "--model", str(tmp_path), "--data", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o")
    )
    assert error == f"error: --data {tmp_path / 'x.jsonl'} does not exist"
