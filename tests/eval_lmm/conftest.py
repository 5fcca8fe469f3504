"""Fixtures for the LMM evaluations: tiny LLaVA folders and small images made in the test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.eval_lmm.tiny_llava import build_tiny_llava  # noqa: E402
from tests.official_records import coco_pope_lines  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    """A tiny LLaVA folder whose processor has a llava-hf style chat template."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_llava_no_template(tmp_path_factory) -> Path:
    """The same kind of folder without a chat template (the built-in LLaVA-1.5 format is used)."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_plain"), chat_template=False, seed=1)


def make_images(folder: Path, names, sizes=None) -> list[Path]:
    """Coloured test images of different sizes (so padding to a square matters)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        size = sizes[index] if sizes else (40 + 8 * (index % 3), 30 + 5 * (index % 4))
        color = ((index * 70) % 256, (index * 130 + 40) % 256, (index * 30 + 90) % 256)
        image = Image.new("RGB", size, color)
        image.paste((255 - color[0], 10, 200), (2, 3, size[0] // 2, size[1] // 2))
        path = folder / name
        image.save(path)
        paths.append(path)
    return paths


def generation_options(model, out: Path, max_new_tokens: int, *more: str) -> list[str]:
    """The options an LMM evaluation command (eval.pope, eval.localization, eval.attributes) is given to answer
    with `model` into `out`, then `more`."""
    return ["--model", str(model), "--out", str(out), "--max-new-tokens", str(max_new_tokens), *more]


def run_lmm_evaluations(model: Path, work: Path) -> None:
    """POPE, attribute probing and localization run on the LLaVA folder `model` (on the CPU, files under `work`)
    and answer every question."""
    from eval import attributes, localization, pope

    make_images(work / "images", ["0.png", "1.png"])
    questions = work / "coco_pope_random.json"  # JSON lines in a .json file, as POPE ships them
    lines = coco_pope_lines(*[("dog", "yes"), ("dog", "no")] * 2, images=("0.png", "1.png"))
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cpu = ("--device", "cpu")
    answered = pope.main(
        [
            "--questions",
            str(questions),
            "--images",
            str(work / "images"),
            *generation_options(model, work / "pope", 3, *cpu),
        ]
    )
    assert answered["num_questions"] == 4 and answered["num_missing"] == 0
    region = {
        "bbox": [0.1, 0.1, 0.6, 0.9],
        "caption": "a small brown dog",
        "hard_negatives": ["a small black dog", "a small white dog", "a large brown dog"],
    }
    regions = work / "regions.jsonl"
    regions.write_text(json.dumps({"image": "images/0.png", "regions": [region]}) + "\n")
    answered = attributes.main(["--data", str(regions), *generation_options(model, work / "attributes", 2, *cpu)])
    assert answered["counts"]["answered"] == answered["counts"]["questions"] == 3
    refs = work / "images" / "refs.jsonl"
    refs.write_text(
        json.dumps({"id": 1, "image": "0.png", "expression": "the dog", "bbox": [0.1, 0.1, 0.5, 0.5]}) + "\n"
    )
    answered = localization.main(["--data", str(refs), *generation_options(model, work / "localization", 12, *cpu)])
    assert answered["num_items"] == 1 and answered["num_missing"] == 0
