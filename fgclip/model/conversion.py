"""Checkpoint conversions: stock CLIP -> FG-CLIP, official FG-CLIP release -> this project, and
FG-CLIP -> a plain `CLIPVisionModel` folder for LLaVA-style models.

Each is one function here and one sub-command of `python -m fgclip.convert`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

from fgclip.errors import UserError
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.modeling import FGCLIPModel
from fgclip.model_card import Provenance, write_model_card
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.transforms import image_processor

# Official FG-CLIP (qihoo360/fg-clip-base, -large; release v1.0) weight names -> this project's.
# Every other weight has the same name in both: they are transformers' CLIPModel names.
OFFICIAL_KEY_MAP = {
    "text_model.embeddings.position_embedding_ori.weight": "long_text_positions.original",
    "text_model.embeddings.position_embedding_res.weight": "long_text_positions.residual",
    "text_filip_projection.weight": "long_text_projection.weight",
    "logit_scale_finegraind": "logit_scale_region",
    "logit_scale_hardneg": "logit_scale_hard",
}

CHECKPOINT_KINDS = ("fgclip", "clip", "official-fgclip")


class CheckpointError(UserError, ValueError):
    """A folder that is not a checkpoint this project can load, with a one-line reason."""


def _read_config(directory: Path) -> dict:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory} has no config.json: not a Hugging Face model folder")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_file} is not valid JSON: {error}") from error


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All weights of a folder: safetensors or PyTorch `.bin`, single file or sharded with an index."""
    for index_name, loader in (("model.safetensors.index.json", "st"), ("pytorch_model.bin.index.json", "bin")):
        index_file = directory / index_name
        if index_file.is_file():
            shards = sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_load_weight_file(directory / shard, loader))
            return state
    if (directory / "model.safetensors").is_file():
        return _load_weight_file(directory / "model.safetensors", "st")
    if (directory / "pytorch_model.bin").is_file():
        return _load_weight_file(directory / "pytorch_model.bin", "bin")
    raise CheckpointError(f"{directory} has no model.safetensors or pytorch_model.bin")


def _load_weight_file(path: Path, kind: str) -> dict[str, torch.Tensor]:
    if kind == "st":
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _weight_names(directory: Path) -> set[str]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (directory / index_name).is_file():
            return set(json.loads((directory / index_name).read_text())["weight_map"])
    if (directory / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
            return set(handle.keys())
    return set(read_state_dict(directory))


def detect_checkpoint_kind(directory: str | Path) -> str:
    """'fgclip' (this project), 'clip' (stock HF CLIP) or 'official-fgclip' (the v1.0 release layout)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a folder")
    config = _read_config(directory)
    model_type = config.get("model_type")
    if model_type == FGCLIPConfig.model_type:
        return "fgclip"
    if model_type == "clip":
        if "FGCLIPModel" in (config.get("architectures") or []):
            return "official-fgclip"
        if "text_filip_projection.weight" in _weight_names(directory):
            return "official-fgclip"
        return "clip"
    raise CheckpointError(
        f"{directory} holds a '{model_type}' model; FG-CLIP loads FG-CLIP folders, CLIP folders "
        "(model_type 'clip') and official FG-CLIP releases"
    )


def fgclip_config_from_clip(clip_config: CLIPConfig | dict, **overrides) -> FGCLIPConfig:
    """An `FGCLIPConfig` with the towers, projection size and temperature of a CLIP config."""
    values = clip_config.to_dict() if isinstance(clip_config, CLIPConfig) else dict(clip_config)
    for key in ("model_type", "architectures", "transformers_version", "auto_map"):
        values.pop(key, None)
    values.update(overrides)
    config = FGCLIPConfig(**values)
    config.architectures = ["FGCLIPModel"]
    return config


def fgclip_from_clip(directory: str | Path, dtype: torch.dtype | None = None) -> FGCLIPModel:
    """FG-CLIP initialised from a stock CLIP folder: long tables stretched, long projection copied."""
    directory = Path(directory)
    if detect_checkpoint_kind(directory) != "clip":
        raise CheckpointError(f"{directory} is not a stock CLIP checkpoint")
    clip = CLIPModel.from_pretrained(str(directory), dtype=dtype or torch.float32)
    model = FGCLIPModel(fgclip_config_from_clip(clip.config))
    incompatible = model.load_state_dict(clip.state_dict(), strict=False)
    own_extras = {"long_text_projection.weight", "long_text_positions.original", "long_text_positions.residual",
                  "logit_scale_region", "logit_scale_hard"}
    unexpected_missing = set(incompatible.missing_keys) - own_extras
    if unexpected_missing or incompatible.unexpected_keys:
        raise CheckpointError(
            f"{directory}: CLIP weights do not fit FG-CLIP (missing {sorted(unexpected_missing)[:3]}, "
            f"unexpected {sorted(incompatible.unexpected_keys)[:3]})"
        )
    model.reset_long_text_from_short()
    return model.to(dtype) if dtype is not None else model


def fgclip_from_official(directory: str | Path, dtype: torch.dtype | None = None) -> FGCLIPModel:
    """Import an official FG-CLIP release folder. Its trained long tables and projection are loaded as
    they are (after stage 2 they are trained weights, so they are never re-derived)."""
    directory = Path(directory)
    config_dict = _read_config(directory)
    state = read_state_dict(directory)
    renamed = {OFFICIAL_KEY_MAP.get(name, name): tensor for name, tensor in state.items()}
    renamed.pop("text_model.embeddings.position_ids", None)
    renamed.pop("vision_model.embeddings.position_ids", None)
    short_slots = renamed["text_model.embeddings.position_embedding.weight"].shape[0]
    config_dict.setdefault("text_config", {})["max_position_embeddings"] = short_slots
    # The release code hard-codes CLIP's special tokens; make the config say so.
    config_dict["text_config"].update(eos_token_id=49407, bos_token_id=49406, pad_token_id=49407)
    config = fgclip_config_from_clip(config_dict)
    model = FGCLIPModel(config)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(renamed), set(renamed) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{directory} does not match the official FG-CLIP layout "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    model.load_state_dict(renamed, strict=True)
    return model.to(dtype) if dtype is not None else model


def save_with_processors(model: FGCLIPModel, directory: str | Path, provenance: Provenance | None = None) -> None:
    """`save_pretrained` plus the tokenizer, image processor and model card (`fgclip.model_card`; `provenance`
    says how the weights came to be), so the folder is self-contained and ready for the Hub."""
    directory = Path(directory)
    model.save_pretrained(str(directory))
    FGCLIPTokenizer().save_pretrained(directory)
    image_processor(model.image_size).save_pretrained(str(directory))
    write_model_card(model, directory, provenance)


def export_vision_tower(model: FGCLIPModel, directory: str | Path) -> Path:
    """Write the image tower as a stock `CLIPVisionModel` folder with a `CLIPImageProcessor`.

    Weights are written with the `vision_model.` prefix: transformers 5.x loads that layout, and so does
    the 4.x line the original LLaVA pins (4.37), which silently re-initialises every weight of the
    un-prefixed layout that `CLIPVisionModel.save_pretrained` writes in 5.x.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vision_config = CLIPVisionConfig(**model.config.vision_config.to_dict())
    vision_config.architectures = ["CLIPVisionModel"]
    config_dict = vision_config.to_dict()
    config_dict["model_type"] = "clip_vision_model"
    config_dict["torch_dtype"] = str(model.dtype).removeprefix("torch.")  # the 4.x name of `dtype`
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    state = {
        f"vision_model.{name}": tensor.detach().contiguous().cpu()
        for name, tensor in model.vision_model.state_dict().items()
        if not name.endswith("position_ids")
    }
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    image_processor(model.image_size).save_pretrained(str(directory))
    return directory
