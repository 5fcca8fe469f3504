"""Fixtures for the data engine: small images and record files made in the test, tiny model folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from fgclip.cli import run
from fgclip.pipeline.cli import main
from tests.pipeline import tiny_models

LONG_CAPTION = (
    "A small brown dog with a red collar sits on a striped wooden sofa. Two white cats sleep on a blue rug "
    "next to a tall glass vase."
)
REGIONS = [
    {"bbox": [0.1, 0.2, 0.5, 0.9], "caption": "a small brown dog"},
    {"bbox": [0.55, 0.5, 0.95, 0.95], "caption": "two white cats"},
    {"bbox": [0.0, 0.6, 0.4, 1.0], "caption": "a striped wooden sofa"},
]


def make_images(folder: Path, count: int, size=(64, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:03d}.png"
        Image.new("RGB", size, ((index * 37) % 256, (index * 91) % 256, 120)).save(path)
        paths.append(path)
    return paths


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))
    return path


def run_cli(argv: list[str]) -> int:
    """`python -m fgclip.pipeline ARGV` in this process; its exit code (usage errors included)."""
    try:
        return run(main, argv)
    except SystemExit as stop:
        return stop.code


@pytest.fixture
def record_file(tmp_path) -> Path:
    """12 records with captions and 3 regions each (no negatives), images in tmp_path/images."""
    make_images(tmp_path / "images", 12)
    items = [
        {
            "image": f"images/img_{index:03d}.png",
            "long_caption": LONG_CAPTION,
            "short_caption": "a dog on a sofa",
            "regions": REGIONS,
        }
        for index in range(12)
    ]
    return write_jsonl(tmp_path / "records.jsonl", items)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> Path:
    return tiny_models.build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_owlv2_dir(tmp_path_factory) -> Path:
    return tiny_models.build_tiny_owlv2(tmp_path_factory.mktemp("tiny_owlv2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return tiny_models.build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))
