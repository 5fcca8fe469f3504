"""Crafted record files and images for the data tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size: int = 48, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:] = colour
    Image.fromarray(pixels).save(path)
    return path


def record(image: str, index: int = 0, regions: int = 1, negatives: int = 10) -> dict:
    return {
        "image": image,
        "long_caption": f"a long description of picture {index} with many details",
        "short_caption": f"picture {index}",
        "regions": [
            {"bbox": [0.1 * r, 0.1, 0.1 * r + 0.3, 0.5], "caption": f"object {r} of picture {index}",
             "long_caption": f"the long expression of object {r} in picture {index}",
             "hard_negatives": [f"negative {n} of object {r}" for n in range(negatives)]}
            for r in range(regions)
        ],
    }


def write_jsonl(path: Path, items: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))
    return path


@pytest.fixture
def good_set(tmp_path) -> Path:
    """8 valid records with images in tmp_path/set/images; returns the JSONL path."""
    root = tmp_path / "set"
    items = []
    for index in range(8):
        write_image(root / "images" / f"{index}.png", colour=(30 * index, 100, 200 - 20 * index))
        items.append(record(f"images/{index}.png", index, regions=1 + index % 6))
    return write_jsonl(root / "data.jsonl", items)
