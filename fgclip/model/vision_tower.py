"""The image tower of an FG-CLIP model as a stock transformers `CLIPVisionModel`, for LLaVA-style models.

One route for every use: `standalone_vision_tower` (a separate model in memory) and `write_vision_tower` (a
folder that plain transformers loads without fgclip). `FGCLIPModel.export_vision_tower` calls the writer; it
takes a tower, not the dual encoder, so the model imports it and it imports nothing of the model.

The folder's weights carry the `vision_model.` prefix. transformers 5 loads that layout and its own; the 4.x line
the original LLaVA pins (4.37) loads only the prefixed one and silently re-initialises every weight of the
un-prefixed layout that `CLIPVisionModel.save_pretrained` writes in 5.x.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from fgclip.hf_files import model_fields
from fgclip.image_processing import image_processor

WEIGHT_PREFIX = "vision_model."


def tower_config(tower: CLIPVisionModel) -> CLIPVisionConfig:
    """A fresh config of the tower's own class with its sizes, naming the tower's class as its architecture."""
    config = type(tower.config)(**model_fields(tower.config.to_dict()))
    config.architectures = [type(tower).__name__]
    return config


def standalone_vision_tower(vision_model: CLIPVisionModel) -> CLIPVisionModel:
    """A copy of `vision_model` (e.g. `FGCLIPModel.vision_model`) as a model of its own, with its own config:
    what `write_vision_tower` writes, without the round trip through disk."""
    tower = type(vision_model)(tower_config(vision_model)).to(vision_model.dtype)
    tower.load_state_dict(vision_model.state_dict(), strict=True)
    return tower.train(vision_model.training)


def write_vision_tower(
    tower: CLIPVisionModel, directory: str | Path, processor: CLIPImageProcessor | None = None
) -> Path:
    """Write `tower` as a folder with `config.json`, `model.safetensors` (the `vision_model.`-prefixed layout)
    and `preprocessor_config.json` (`processor`; by default FG-CLIP's square resize at the tower's size).

    A `CLIPVisionModel` subclass keeps its own `model_type` and class name in the config (e.g. a tower whose
    features are the value path); the folder is created when missing. Returns the folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = tower_config(tower).to_dict()
    config["model_type"] = tower.config.model_type
    config["torch_dtype"] = str(tower.dtype).removeprefix("torch.")  # the 4.x name of `dtype`
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = {
        f"{WEIGHT_PREFIX}{name}": tensor.detach().contiguous().cpu()
        for name, tensor in tower.state_dict().items()
        if not name.endswith("position_ids")
    }
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (processor or image_processor(tower.config.image_size)).save_pretrained(str(directory))
    return directory
