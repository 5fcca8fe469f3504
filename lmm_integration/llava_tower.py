"""`FGCLIPVisionTower`: FG-CLIP as the vision tower class of the original LLaVA codebase (see `lmm_integration.tower`).

Only torch and transformers APIs that 4.37 and 5.x share are used at import time, so this module runs inside the
old environment the original LLaVA pins.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from fgclip.hf_files import model_fields
from fgclip.value_path import DENSE_MODEL_TYPE, value_path_features
from lmm_integration.dense import check_feature_source
from lmm_integration.tower_names import NAME_PREFIX, is_fgclip_dual_encoder


def _strip_prefix(name: str) -> str:
    return name[len(NAME_PREFIX) :] if name.startswith(NAME_PREFIX) else name


def _read_config(directory: Path) -> dict:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"FG-CLIP vision tower: {directory} has no config.json")
    return json.loads(config_file.read_text())


def _vision_config(config: dict) -> CLIPVisionConfig:
    """The tower's `CLIPVisionConfig` from a tower, CLIP or FG-CLIP `config.json`."""
    values = config.get("vision_config", config) if "vision_config" in config else config
    return CLIPVisionConfig(**model_fields(values))


class FGCLIPVisionTower(nn.Module):
    """Drop-in for LLaVA's `CLIPVisionTower`: same constructor, methods and properties.

    vision_tower: a folder (optionally written `fgclip:FOLDER`): an exported tower (plain or dense), a
        stock CLIP folder, or an FG-CLIP folder (the last needs transformers 5 and `fgclip`).
    args: LLaVA's model arguments or model config; reads `mm_vision_select_layer`,
        `mm_vision_select_feature` (`patch` drops CLS, `cls_patch` keeps it), `unfreeze_mm_vision_tower`
        and, if present, `mm_vision_features` (`hidden` or `dense`; a dense tower folder implies dense).
    """

    def __init__(self, vision_tower: str, args, delay_load: bool = False):
        super().__init__()
        self.is_loaded = False
        self.vision_tower_name = vision_tower
        self.path = Path(_strip_prefix(str(vision_tower)))
        self.select_layer = getattr(args, "mm_vision_select_layer", -2)
        self.select_feature = getattr(args, "mm_vision_select_feature", "patch")
        if self.select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"Unexpected select feature: {self.select_feature}")
        config = _read_config(self.path)
        implied = "dense" if config.get("model_type") == DENSE_MODEL_TYPE else "hidden"
        self.features = check_feature_source(getattr(args, "mm_vision_features", None) or implied)
        self.cfg_only = _vision_config(config)
        if not delay_load or getattr(args, "unfreeze_mm_vision_tower", False):
            self.load_model()

    def load_model(self, device_map=None) -> None:
        if self.is_loaded:
            print(f"{self.vision_tower_name} is already loaded, `load_model` called again, skipping.")
            return
        config = _read_config(self.path)
        if is_fgclip_dual_encoder(config):
            from lmm_integration.vision import load_vision_tower  # transformers 5 + fgclip

            loaded = load_vision_tower(self.path, "hidden")
            self.vision_tower, self.image_processor = loaded.model, loaded.image_processor
            if device_map is not None:
                self.vision_tower.to(device_map)
        else:
            self.vision_tower = CLIPVisionModel.from_pretrained(
                str(self.path), config=self.cfg_only, device_map=device_map
            )
            self.image_processor = self._folder_image_processor()
        self.vision_tower.requires_grad_(False)
        self.is_loaded = True

    def _folder_image_processor(self) -> CLIPImageProcessor:
        if (self.path / "preprocessor_config.json").is_file():
            return CLIPImageProcessor.from_pretrained(str(self.path))
        size = self.cfg_only.image_size  # FG-CLIP's square resize; crop_size is read by LLaVA for blank images
        return CLIPImageProcessor(
            size={"height": size, "width": size},
            crop_size={"height": size, "width": size},
            do_center_crop=False,
            resample=3,
        )

    def feature_select(self, forward_output) -> torch.Tensor:
        """`(B, N, C)` patch features (`N` = patches, +1 with `cls_patch`)."""
        if self.features == "dense":
            features = value_path_features(self.vision_tower, forward_output.hidden_states[-2])
        else:
            features = forward_output.hidden_states[self.select_layer]
        return features[:, 1:] if self.select_feature == "patch" else features

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        output = self.vision_tower(images.to(device=self.device, dtype=self.dtype), output_hidden_states=True)
        return self.feature_select(output).to(images.dtype)

    def forward(self, images):
        """images: `(B, 3, S, S)` or a list of `(3, S, S)`; returns `(B, N, C)` or a list of `(1, N, C)`."""
        trainable = any(parameter.requires_grad for parameter in self.vision_tower.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            if isinstance(images, list):
                return [self._encode(image.unsqueeze(0)) for image in images]
            return self._encode(images)

    @property
    def dummy_feature(self) -> torch.Tensor:
        return torch.zeros(1, self.hidden_size, device=self.device, dtype=self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_tower.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_tower.device

    @property
    def config(self) -> CLIPVisionConfig:
        return self.vision_tower.config if self.is_loaded else self.cfg_only

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_patches_per_side(self) -> int:
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2
