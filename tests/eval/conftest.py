"""Fixtures for the encoder benchmarks: a tiny saved model folder and small images made on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import save_tiny_fgclip

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random FG-CLIP saved with tokenizer and image processor (what users point --model at)."""
    return save_tiny_fgclip(tmp_path_factory.mktemp("tiny_fgclip"))


def make_image(path: Path, colour=(128, 128, 128), size=(48, 40), seed: int | None = None) -> Path:
    """A small RGB image: a flat colour, or noise when `seed` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if seed is None:
        array = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
    else:
        array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def write_jsonl(path: Path, items) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def common_args(model_dir: Path, out: Path, cache: Path | None = None) -> list[str]:
    """Options every benchmark takes: the model, no worker processes, the output and cache folders."""
    args = ["--model", str(model_dir), "--num_workers", "0", "--batch_size", "4", "--output_dir", str(out)]
    return args + (["--cache_dir", str(cache)] if cache else ["--no_cache"])
