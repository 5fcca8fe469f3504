"""Fixtures for the LMM evaluations: tiny LLaVA folders and small images made in the test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.eval_lmm.tiny_llava import build_tiny_llava  # noqa: E402


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
