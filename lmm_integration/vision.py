"""Load a vision tower for LLaVA from any folder a user is likely to hold.

Accepted: this project's FG-CLIP folders and official FG-CLIP releases (the image tower is taken out of
the dual encoder, which is what `FGCLIPModel.export_vision_tower` writes), stock Hugging Face CLIP
folders, and plain `CLIPVisionModel` folders (an exported tower, or the tower of a LLaVA checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from fgclip.errors import UserError
from fgclip.json_files import read_json
from fgclip.model.dense_tower import FGCLIPDenseVisionModel, to_dense_tower
from fgclip.model.vision_tower import standalone_vision_tower
from fgclip.value_path import DENSE_MODEL_TYPE
from lmm_integration.dense import check_feature_source

TOWER_MODEL_TYPES = ("clip_vision_model", DENSE_MODEL_TYPE)


@dataclass
class VisionTower:
    """A loaded tower and its preprocessing. `kind` says what the source folder was."""

    model: CLIPVisionModel
    image_processor: CLIPImageProcessor
    kind: str  # fgclip | official-fgclip | clip | clip_vision_model | fgclip_dense_vision
    source: str
    features: str  # hidden | dense

    @property
    def config(self) -> CLIPVisionConfig:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image (CLS not counted)."""
        return (self.image_size // self.patch_size) ** 2


def _model_type(directory: Path) -> str | None:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserError(f"{directory} has no config.json: not a Hugging Face model folder")
    return read_json(config_file).get("model_type")


def vision_source_kind(source: str | Path) -> str:
    """What `source` is (fgclip | official-fgclip | clip | clip_vision_model | fgclip_dense_vision), read from its
    config only; a folder of any other kind is a one-line `UserError`."""
    from fgclip.model.conversion import detect_checkpoint_kind

    directory = Path(source)
    if not directory.is_dir():
        raise UserError(f"vision folder not found: {directory}")
    model_type = _model_type(directory)
    if model_type in TOWER_MODEL_TYPES:
        return model_type
    if model_type and model_type.startswith("llava"):
        raise UserError(
            f"--vision {directory} is a LLaVA folder; give an FG-CLIP or CLIP folder as --vision "
            f"(and {directory} as --from_llava to swap its tower)"
        )
    try:
        return detect_checkpoint_kind(directory)
    except UserError as error:
        raise UserError(f"--vision {error}") from error


def _from_pretrained(model_class, directory: Path, **kwargs):
    try:
        return model_class.from_pretrained(str(directory), **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:  # missing, truncated, mismatched
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"--vision {directory}: cannot load its weights ({reason})") from error


def _load_plain_tower(directory: Path, model_type: str, dtype: torch.dtype) -> CLIPVisionModel:
    """A `CLIPVisionModel` (or dense) folder, refusing one whose weights would be left random."""
    model_class = FGCLIPDenseVisionModel if model_type == DENSE_MODEL_TYPE else CLIPVisionModel
    model, info = _from_pretrained(model_class, directory, dtype=dtype, output_loading_info=True)
    missing = [name for name in info["missing_keys"] if not name.endswith("position_ids")]
    if missing:
        raise UserError(
            f"{directory}: {len(missing)} tower weights are missing (e.g. {sorted(missing)[0]}); "
            "the tower would be random"
        )
    return model


def _folder_image_processor(directory: Path, image_size: int) -> CLIPImageProcessor:
    """The folder's own `CLIPImageProcessor`, or FG-CLIP's square resize when it carries none."""
    from fgclip.transforms import image_processor

    if (directory / "preprocessor_config.json").is_file():
        try:
            return CLIPImageProcessor.from_pretrained(str(directory))
        except (OSError, ValueError, TypeError):
            pass
    return image_processor(image_size)


def load_vision_tower(source: str | Path, features: str = "hidden", dtype: torch.dtype = torch.float32) -> VisionTower:
    """The image tower of `source` as a stock `CLIPVisionModel` (or the dense tower for `features="dense"`).

    FG-CLIP sources always get FG-CLIP's preprocessing (square resize, no crop); CLIP and plain tower
    folders keep the image processor they carry.
    """
    from fgclip.transforms import image_processor

    check_feature_source(features)
    directory = Path(source)
    kind = vision_source_kind(directory)
    if kind in TOWER_MODEL_TYPES:
        model = _load_plain_tower(directory, kind, dtype)
        processor = _folder_image_processor(directory, model.config.image_size)
    else:
        if kind == "clip":
            model = _load_plain_tower(directory, "clip_vision_model", dtype)
            processor = _folder_image_processor(directory, model.config.image_size)
        else:
            from fgclip.model import FGCLIPModel

            encoder = _from_pretrained(FGCLIPModel, directory, dtype=dtype)
            model = standalone_vision_tower(encoder.vision_model)
            processor = image_processor(encoder.image_size)
    if features == "dense" and not isinstance(model, FGCLIPDenseVisionModel):
        model = to_dense_tower(model)
    if features == "hidden" and isinstance(model, FGCLIPDenseVisionModel):
        raise UserError(f"{directory} is a dense tower; build with --vision_features dense")
    return VisionTower(
        model=model.eval(), image_processor=processor, kind=kind, source=str(directory), features=features
    )
