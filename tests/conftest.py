"""Shared fixtures: tiny real models built from configs (no network), the offline tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fgclip import FGCLIPConfig, FGCLIPModel, FGCLIPTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)


def write_one_region_record(path):
    """A regions file (`--data` of fgovd and of pretraining) of one record: image a.png, one box with its caption
    and one hard negative. Returns `path`."""
    import json

    region = {"bbox": [0.1, 0.1, 0.5, 0.5], "caption": "a red cube", "hard_negatives": ["a blue cube"]}
    path.write_text(json.dumps({"image": "a.png", "regions": [region]}) + "\n")
    return path


def command_error(module: str, *args: str) -> str:
    """Run `python -m module *args` as a user types it (a fresh interpreter in the repository root, this checkout
    first on the path), where it must fail as bad input does: exit 2, no traceback. Returns its last stderr line."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def tiny_config(**overrides) -> FGCLIPConfig:
    """A tiny FG-CLIP config: real CLIP vocabulary (49,408) so the real tokenizer works, 4x4 patch grid."""
    values = dict(text_config=dict(TINY_TEXT), vision_config=dict(TINY_VISION), projection_dim=16)
    values.update(overrides)
    return FGCLIPConfig(**values)


def save_tiny_fgclip(folder, seed: int = 0, **overrides):
    """A random tiny FG-CLIP folder (weights, tokenizer, image processor) of `tiny_config(**overrides)`, drawn
    after `torch.manual_seed(seed)`: what --model / --init point at. Returns `folder`."""
    from fgclip.folders import save_with_processors

    torch.manual_seed(seed)
    save_with_processors(FGCLIPModel(tiny_config(**overrides)).eval(), folder)
    return folder


@pytest.fixture
def tiny_model() -> FGCLIPModel:
    torch.manual_seed(0)
    return FGCLIPModel(tiny_config()).eval()


@pytest.fixture(scope="session")
def tokenizer() -> FGCLIPTokenizer:
    return FGCLIPTokenizer()


@pytest.fixture(scope="session")
def hub_copy(tmp_path_factory):
    """`hub_copy("openai/clip-vit-base-patch16")` -> a tiny faithful copy of that Hub folder
    (tests/hub_copies/clip.py), made once per session. Treat it as read-only: write outputs elsewhere."""
    from tests.hub_copies.clip import make_hub_copy

    made: dict[str, object] = {}

    def make(repo_id: str):
        if repo_id not in made:
            made[repo_id] = make_hub_copy(repo_id, tmp_path_factory.mktemp(repo_id.replace("/", "--")))
        return made[repo_id]

    return make
