"""Fixtures for the Fashion-FINE tests: tiny real models built from configs, saved the way users have them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fgclip import FashionFINEConfig, FashionFINEModel
from fgclip.fashion.synthetic import SyntheticSettings, generate
from tests.conftest import save_tiny_fgclip, tiny_config


def tiny_fashion_config(**overrides) -> FashionFINEConfig:
    """The tiny FG-CLIP config of tests/conftest.py with Fashion-FINE's parts (4 fusion heads over 16 dims)."""
    values = {
        k: v
        for k, v in tiny_config().to_dict().items()
        if k not in ("model_type", "architectures", "transformers_version")
    }
    return FashionFINEConfig(**{**values, "fusion_heads": 4, **overrides})


def tiny_fashion_model(seed: int = 0, **overrides) -> FashionFINEModel:
    torch.manual_seed(seed)
    return FashionFINEModel(tiny_fashion_config(**overrides))


@pytest.fixture(scope="session")
def tiny_towers_dir(tmp_path_factory) -> Path:
    """A tiny FG-CLIP folder (weights, tokenizer, image processor): what `--init` points at."""
    return save_tiny_fgclip(tmp_path_factory.mktemp("tiny_towers"))


@pytest.fixture(scope="session")
def products(tmp_path_factory) -> Path:
    """A small synthetic set at the tiny towers' 32 px."""
    out = tmp_path_factory.mktemp("fashion_set")
    generate(out, SyntheticSettings(families=10, views=2, image_size=32, seed=1), progress=False)
    return out
