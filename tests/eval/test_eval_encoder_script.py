"""scripts/eval_encoder.sh: help, usage errors, and an FG-OVD run through the wrapper."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.eval.conftest import make_image, write_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_encoder.sh"


def run(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_DIR", "_INSTANCES", "_CAPTIONS", "_JSON"))}
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=SCRIPT.parents[1],
        timeout=600,
    )


def test_help_and_usage_errors(tmp_path):
    shown = run("--help")
    assert shown.returncode == 0 and "usage: scripts/eval_encoder.sh MODEL_DIR OUT_DIR" in shown.stdout
    assert "FGOVD_DIR" in shown.stdout and "IMAGENET_VAL" in shown.stdout
    assert run("one").returncode == 2
    nothing = run(tmp_path, tmp_path / "out")
    assert nothing.returncode == 2 and "no benchmark data configured" in nothing.stderr
    empty = run(tmp_path, tmp_path / "out", FGOVD_DIR=str(tmp_path))
    assert empty.returncode == 2 and "no FG-OVD" in empty.stderr


@pytest.mark.slow
def test_fgovd_through_the_wrapper_and_failures_stop_it(tiny_model_dir, tmp_path):
    make_image(tmp_path / "coco" / "a.png", seed=1)
    write_jsonl(
        tmp_path / "fgovd" / "1_attributes_llava.jsonl",
        [
            {
                "img_path": "a.png",
                "bbox": [2, 2, 20, 20],
                "width": 48,
                "height": 40,
                "pos_expression": "a red car",
                "neg_expression": ["a blue car", "a green car"],
            }
        ],
    )
    done = run(
        tiny_model_dir,
        tmp_path / "out",
        FGOVD_DIR=str(tmp_path / "fgovd"),
        FGOVD_IMAGES=str(tmp_path / "coco"),
        BATCH_SIZE="2",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "fgovd" / "results.json").read_text())
    assert result["num_regions"] == 1 and "top1_hard" in result
    # without FGOVD_IMAGES the image is not found: the benchmark fails and the wrapper stops with its code
    broken = run(
        tiny_model_dir,
        tmp_path / "out2",
        FGOVD_DIR=str(tmp_path / "fgovd"),
        COCO_INSTANCES=str(tmp_path / "absent.json"),
    )
    assert broken.returncode == 2 and "no region could be scored" in broken.stderr
    assert "== box_cls_coco" not in broken.stdout
