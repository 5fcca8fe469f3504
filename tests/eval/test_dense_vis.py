"""eval.dense_vis: map normalisations by hand, heatmap and region pictures end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eval import dense_vis
from fgclip.cli import run
from fgclip.errors import UserError
from tests.eval.conftest import write_jsonl


def test_normalisations_by_hand():
    cosine = torch.tensor([[[0.1, 0.3], [0.2, 0.5]], [[0.4, 0.3], [0.0, 0.5]]])
    torch.testing.assert_close(dense_vis.normalize_maps(cosine, "raw", 1.0), cosine)
    minmax = dense_vis.normalize_maps(cosine, "minmax", 1.0)
    torch.testing.assert_close(minmax[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    softmax = dense_vis.normalize_maps(cosine, "softmax", 10.0)
    torch.testing.assert_close(softmax.sum(dim=0), torch.ones(2, 2))
    assert softmax[1, 0, 0] > 0.9 and softmax[0, 0, 1] == pytest.approx(0.5)  # 0.4 vs 0.1 at scale 10; a tie
    flat = dense_vis.normalize_maps(torch.full((1, 2, 2), 0.2), "minmax", 1.0)
    assert torch.isfinite(flat).all()  # a constant map does not divide by zero


def test_similarity_maps_are_cosines():
    dense = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    maps = dense_vis.similarity_maps(dense, texts)
    assert maps.shape == (2, 3, 4)
    torch.testing.assert_close(maps[1, 2, 3], dense[2, 3] @ texts[1])


def scene(tmp_path):
    array = np.zeros((60, 80, 3), dtype=np.uint8)
    array[:] = (30, 160, 40)
    array[15:45, 20:50] = (220, 30, 30)
    Image.fromarray(array).save(tmp_path / "scene.png")
    return tmp_path / "scene.png"


def test_heatmaps_and_boxes_for_an_image(tiny_model_dir, tmp_path):
    image = scene(tmp_path)
    out = tmp_path / "out"
    result = dense_vis.main(
        [
            "--model",
            str(tiny_model_dir),
            "--image",
            str(image),
            "--text",
            "a red square",
            "--text",
            "green background",
            "--normalize",
            "softmax",
            "--boxes",
            "0.25,0.25,0.62,0.75",
            "0,0,0.2,0.2",
            "--out",
            str(out),
            "--num-workers",
            "0",
        ]
    )
    assert (out / "heatmap.png").stat().st_size > 0 and (out / "regions.png").stat().st_size > 0
    assert result["grid"] == [4, 4] and result["num_texts"] == 2 and result["num_regions"] == 2
    texts = result["details"]["texts"]
    assert all(-1.0 <= t["min"] <= t["mean"] <= t["max"] <= 1.0 for t in texts)
    assert all(r["best_caption"] in ("a red square", "green background") for r in result["details"]["regions"])
    assert "region_top1" not in result  # no ground truth without a record


def test_boxes_of_a_record_with_ground_truth(tiny_model_dir, tmp_path):
    scene(tmp_path)
    records = write_jsonl(
        tmp_path / "records.jsonl",
        [
            {"image": "other.png", "regions": []},
            {
                "image": "scene.png",
                "regions": [
                    {"bbox": [0.25, 0.25, 0.62, 0.75], "caption": "a red square", "hard_negatives": ["a blue square"]},
                    {"bbox": [0.0, 0.0, 0.2, 0.2], "caption": "green grass"},
                ],
            },
        ],
    )
    result = dense_vis.main(
        [
            "--model",
            str(tiny_model_dir),
            "--record",
            str(records),
            "--index",
            "1",
            "--normalize",
            "raw",
            "--out",
            str(tmp_path / "out"),
            "--num-workers",
            "0",
        ]
    )
    regions = result["details"]["regions"]
    assert [r["caption"] for r in regions] == ["a red square", "green grass"]
    assert result["region_top1"] == sum(r["correct"] for r in regions) / 2
    assert [t["text"] for t in result["details"]["texts"]] == ["a red square", "green grass"]
    with pytest.raises(UserError, match="has no regions"):
        dense_vis.main(["--model", str(tiny_model_dir), "--record", str(records), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="fewer than 6 records"):
        dense_vis.main(
            ["--model", str(tiny_model_dir), "--record", str(records), "--index", "5", "--out", str(tmp_path / "o")]
        )


def test_usage_errors(tiny_model_dir, tmp_path, capsys):
    image = scene(tmp_path)
    base = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    assert run(dense_vis.main, [*base, "--image", str(image), "--text", "a", "--normalize", "softmax"]) == 2
    assert "two or more --text" in capsys.readouterr().err
    with pytest.raises(UserError, match="does not exist"):
        dense_vis.main([*base, "--image", str(tmp_path / "none.png"), "--text", "a"])
    with pytest.raises(UserError, match="give --image"):
        dense_vis.main(base)
    with pytest.raises(SystemExit) as exit_info:  # argparse: a bad box is a usage error, exit 2
        dense_vis.main([*base, "--image", str(image), "--text", "a", "--boxes", "0.5,0.5,0.2,0.9"])
    assert exit_info.value.code == 2
