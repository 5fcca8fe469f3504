"""The scripts/eval_*.sh wrappers: help, usage errors, and one end-to-end run on a tiny LLaVA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.eval_lmm.conftest import make_images

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["eval_pope.sh", "eval_attributes.sh", "eval_localization.sh"]


def run(script, *args, **env):
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_usage_errors(script):
    shown = run(script, "--help")
    assert shown.returncode == 0 and "usage: scripts/" in shown.stdout
    missing = run(script, "only-one-argument")
    assert missing.returncode == 2 and missing.stderr.strip().endswith("OUT_DIR")


def test_pope_script_without_question_files(tmp_path):
    result = run("eval_pope.sh", tmp_path, tmp_path, tmp_path, tmp_path / "out")
    assert result.returncode == 2 and "no *pope_" in result.stderr


@pytest.mark.slow
def test_pope_script_end_to_end(tiny_llava, tmp_path):
    make_images(tmp_path / "images", ["0.png"])
    for split in ("random", "popular", "adversarial"):
        rows = [
            {"question_id": i, "image": "0.png", "text": "Is there a dog in the image?", "label": label}
            for i, label in enumerate(["yes", "no"])
        ]
        (tmp_path / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = run(
        "eval_pope.sh",
        tiny_llava,
        tmp_path,
        tmp_path / "images",
        out,
        "--max-new-tokens",
        "3",
        BATCH_SIZE="2",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        PYTHONPATH=str(REPO),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["splits"]) == {"random", "popular", "adversarial"} and saved["num_questions"] == 6
    assert saved["details"]["generation"]["batch_size"] == 2
