"""Crafted record files and images for the data tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.official_records import finehard_box, finehard_item


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
            {
                "bbox": [0.1 * r, 0.1, 0.1 * r + 0.3, 0.5],
                "caption": f"object {r} of picture {index}",
                "long_caption": f"the long expression of object {r} in picture {index}",
                "hard_negatives": [f"negative {n} of object {r}" for n in range(negatives)],
            }
            for r in range(regions)
        ],
    }


def write_jsonl(path: Path, items: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))
    return path


DOG_COLOURS = ("black", "white", "grey", "red", "blue", "green", "yellow", "pink", "purple", "orange")
OFFICIAL_JSON_NAMES = (
    "2024-12-06_18-32-53_results_10_218_126_44_1025.json",
    "2024-12-06_18-33-17_results_llama70b-shcdt-h100-4gpus-no-2.json",
)


def official_finehard(root, missing_image: bool = False):
    """FineHARD as users have it after the official download and renaming scripts: `jsonfiles/*.json` lists
    whose `f_path` starts with `grit-20m/data-12m/`, images under `grit-12m/coyo_image_<i>/<nnnnn>/`."""
    items = []
    for part, name in enumerate(OFFICIAL_JSON_NAMES):
        part_items = []
        for index in range(3):
            relative = f"coyo_image_{part}/0000{index}/{part:03d}{index:06d}.jpg"
            if not (missing_image and part == 1 and index == 2):
                write_image(root / "grit-12m" / relative, colour=(40 * index, 90, 30 * part))
            dog = finehard_box(
                [0.1, 0.2, 0.5, 0.9, 0.873],
                "a brown dog",
                "a small brown dog lying on the left of the sofa",
                [f"a {colour} dog" for colour in DOG_COLOURS],
            )
            lamp = finehard_box([0.55, 0.1, 0.9, 0.45, 0.61], "a lamp", "a tall lamp")
            part_items.append(
                finehard_item(
                    f"grit-20m/data-12m/{relative}",
                    f"A detailed description of picture {part}-{index}: a dog, a sofa and a lamp.",
                    f"a dog on a sofa {part}-{index}",
                    [dog, lamp],
                )
            )
        (root / "jsonfiles").mkdir(parents=True, exist_ok=True)
        (root / "jsonfiles" / name).write_text(json.dumps(part_items))
        items += part_items
    return items


@pytest.fixture
def good_set(tmp_path) -> Path:
    """8 valid records with images in tmp_path/set/images; returns the JSONL path."""
    root = tmp_path / "set"
    items = []
    for index in range(8):
        write_image(root / "images" / f"{index}.png", colour=(30 * index, 100, 200 - 20 * index))
        items.append(record(f"images/{index}.png", index, regions=1 + index % 6))
    return write_jsonl(root / "data.jsonl", items)
