"""Which tower names and folders are FG-CLIP's, for LLaVA's `build_vision_tower`: read from `config.json` only.

Standard library only: the command (`lmm_integration.tower`) and the tower class (`lmm_integration.llava_tower`,
imported inside the original LLaVA's transformers 4.37 environment) share it.
"""

from __future__ import annotations

import json
from pathlib import Path

from fgclip.value_path import DENSE_MODEL_TYPE

NAME_PREFIX = "fgclip:"
FGCLIP_MODEL_TYPES = ("fgclip",)


def is_fgclip_dual_encoder(config: dict) -> bool:
    return config.get("model_type") in FGCLIP_MODEL_TYPES or "FGCLIPModel" in (config.get("architectures") or [])


def wants_fgclip(name: str | None) -> bool:
    """Whether LLaVA's tower `name` should be an `FGCLIPVisionTower`: an `fgclip:` name, or a local folder holding an
    FG-CLIP model or a dense tower."""
    if not name:
        return False
    if name.startswith(NAME_PREFIX):
        return True
    directory = Path(name)
    if not (directory / "config.json").is_file():
        return False
    config = json.loads((directory / "config.json").read_text())
    return is_fgclip_dual_encoder(config) or config.get("model_type") == DENSE_MODEL_TYPE
