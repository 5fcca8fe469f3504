"""Checkpoint conversions as data: config.json -> `FGCLIPConfig`, weights -> this project's names.

Three kinds of folder load into `FGCLIPModel` (`FGCLIPModel.from_pretrained` dispatches on
`detect_checkpoint_kind`): this project's own ('fgclip', loaded by transformers as it is), stock Hugging Face
CLIP ('clip': FG-CLIP's own parts derived from CLIP's by `derived_weights`) and the official FG-CLIP release
('official-fgclip': its weights renamed by `OFFICIAL_KEY_MAP`, the way transformers applies key mappings at
load time). This module turns a folder into a config and a state dict; it imports nothing of the model, which
imports it. Writing whole folders (tokenizer, image processor, model card) is `fgclip.folders`' job.

Folders are read as the Hub has them: the special-token ids come from the folder's tokenizer files, never
from a config's legacy `eos_token_id: 2`, and every folder is checked (config, whole weight files) before
use, so a bad one is a one-line `UserError` naming the file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPTextConfig

from fgclip.errors import UserError
from fgclip.hf_files import CLIP_SPECIAL_TOKEN_IDS, FILE_KEYS, SpecialTokenIds, folder_special_token_ids, read_config
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.positions import stretch_position_table

__all__ = [
    "CHECKPOINT_KINDS",
    "OFFICIAL_KEY_MAP",
    "check_weight_files",
    "converted_checkpoint",
    "derived_weights",
    "detect_checkpoint_kind",
    "fgclip_config_from_clip",
    "read_state_dict",
    "read_text_vocab_size",
    "weight_files",
]

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
SHORT_POSITIONS = "text_model.embeddings.position_embedding.weight"
# Weight names older transformers versions saved (persistent position-id buffers); never weights.
_BUFFER_NAMES = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def derived_weights(weights: Mapping[str, torch.Tensor], config: FGCLIPConfig) -> dict[str, torch.Tensor]:
    """FG-CLIP's own parts as they start, derived from CLIP's: the one rule for their initial values.

    * both long-text position tables (`long_text_positions.original` and `.residual`): the short table
      stretched from 77 to 248 slots (`stretch_position_table`, slots below `long_text_keep_positions` kept);
    * the long-text projection: a copy of the text projection;
    * the regional and hard-negative temperatures: the global one (FG-CLIP starts them there), unless the
      config gives them their own initial value.

    `weights` maps CLIP's names to tensors (a state dict, or a model's own parameters). Used for every new
    model (`FGCLIPModel._init_weights`), for the parts a stock CLIP checkpoint lacks (`converted_checkpoint`),
    and to start stage 2's temperatures (`FGCLIPModel.reset_fine_grained_temperatures`).
    """
    stretched = stretch_position_table(weights[SHORT_POSITIONS].detach(), config.long_text_keep_positions)
    scale = weights["logit_scale"].detach()

    def temperature(initial: float | None) -> torch.Tensor:
        return scale.clone() if initial is None else torch.full_like(scale, initial)

    return {
        "long_text_positions.original": stretched,
        "long_text_positions.residual": stretched.clone(),
        "long_text_projection.weight": weights["text_projection.weight"].detach().clone(),
        "logit_scale_region": temperature(config.region_logit_scale_init_value),
        "logit_scale_hard": temperature(config.hard_negative_logit_scale_init_value),
    }


# ---------------------------------------------------------------- weight files


def weight_files(directory: Path) -> list[Path]:
    """The weight files a folder's model is loaded from, in transformers' order of preference: one
    safetensors file, sharded safetensors, one PyTorch `.bin`, sharded `.bin`. `UserError` when none."""
    for single, index_name in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (directory / single).is_file():
            return [directory / single]
        index_file = directory / index_name
        if index_file.is_file():
            try:
                weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise UserError(f"{index_file} is not a valid weight index ({error})") from error
            missing = [name for name in shards if not (directory / name).is_file()]
            if missing:
                raise UserError(
                    f"{index_file} lists {missing[0]}, which is not in the folder "
                    f"({len(missing)} of {len(shards)} shards missing)"
                )
            return [directory / name for name in shards]
    raise UserError(f"{directory} has no model.safetensors or pytorch_model.bin (nor a sharded index)")


def _damaged(path: Path, reason: object) -> UserError:
    text = str(reason).strip()
    text = text.splitlines()[0] if text else type(reason).__name__
    return UserError(f"{path} is damaged ({text}): an interrupted download or copy? Fetch the file again")


def check_weight_files(directory: Path) -> list[Path]:
    """`weight_files`, each checked to be whole (a safetensors header that covers the file, a complete zip
    archive for `.bin`) without reading the weights. `UserError` names the damaged file."""
    files = weight_files(directory)
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except (SafetensorError, OSError) as error:
                raise _damaged(path, error) from error
        else:
            with path.open("rb") as handle:
                zipped = handle.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6 (older: a bare pickle)
            if zipped and not zipfile.is_zipfile(path):
                raise _damaged(path, "incomplete zip archive")
    return files


def _load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All weights of a folder: safetensors or PyTorch `.bin`, single file or sharded with an index."""
    state: dict[str, torch.Tensor] = {}
    for path in check_weight_files(directory):
        try:
            state.update(_load_weight_file(path))
        except Exception as error:  # any failure to read a weight file is a damaged file
            raise _damaged(path, error) from error
    return state


def _weight_names(directory: Path) -> set[str]:
    names: set[str] = set()
    for path in weight_files(directory):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                names.update(handle.keys())
        else:
            names.update(_load_weight_file(path))
    return names


# ---------------------------------------------------------------- folders


def detect_checkpoint_kind(directory: str | Path) -> str:
    """'fgclip' (this project), 'clip' (stock HF CLIP) or 'official-fgclip' (the v1.0 release layout).

    Also checks that the weight files are there and whole, so that every command that loads a model fails
    in its first second, in one line naming the file, on a folder it cannot use.
    """
    directory = Path(directory)
    if directory.is_file():
        raise UserError(f"{directory} is a file; give the model folder (the one holding config.json and the weights)")
    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder")
    config = read_config(directory)
    model_type = config.get("model_type")
    config_file = directory / "config.json"
    if model_type == FGCLIPConfig.model_type:
        check_weight_files(directory)
        return "fgclip"
    if model_type == "clip":
        for key in ("text_config", "vision_config"):
            if not isinstance(config.get(key, {}), dict):
                raise UserError(f"{config_file}: {key} must be a JSON object")
        check_weight_files(directory)
        official = "FGCLIPModel" in (
            config.get("architectures") or []
        ) or "text_filip_projection.weight" in _weight_names(directory)
        return "official-fgclip" if official else "clip"
    if model_type in ("clip_vision_model", "clip_text_model"):
        raise UserError(
            f"{config_file}: model_type '{model_type}' is a single CLIP tower (e.g. an exported "
            "vision tower); FG-CLIP needs a dual encoder: a CLIP, FG-CLIP or official FG-CLIP folder"
        )
    if model_type is None:
        raise UserError(f"{config_file} has no model_type: not a Hugging Face model config")
    raise UserError(
        f"{config_file} describes a '{model_type}' model, which FG-CLIP does not read; give an "
        "FG-CLIP folder, a CLIP folder (model_type 'clip') or an official FG-CLIP release"
    )


def read_text_vocab_size(directory: Path) -> int:
    """Rows of the text model's token embedding, from config.json (CLIP's 49,408 when unstated)."""
    text_config = read_config(directory).get("text_config") or {}
    return int(text_config.get("vocab_size", CLIPTextConfig().vocab_size))


def fgclip_config_from_clip(
    clip_config: CLIPConfig | dict, special_token_ids: SpecialTokenIds | None = None, **overrides
) -> FGCLIPConfig:
    """An `FGCLIPConfig` with the towers, projection size and temperature of a CLIP config (a config object
    or a config.json dict as it is, legacy `*_config_dict` keys included), and the tokenizer's real
    special-token ids (CLIP's by default; never the legacy `eos_token_id: 2` of the Hub's OpenAI configs)."""
    values = clip_config.to_dict() if isinstance(clip_config, CLIPConfig) else dict(clip_config)
    for key in FILE_KEYS:
        values.pop(key, None)
    values.update(overrides)
    config = FGCLIPConfig.from_dict(values)
    config.set_special_token_ids(special_token_ids or CLIP_SPECIAL_TOKEN_IDS)
    config.architectures = ["FGCLIPModel"]
    return config


def converted_checkpoint(directory: str | Path, kind: str) -> tuple[FGCLIPConfig, dict[str, torch.Tensor]]:
    """The `FGCLIPConfig` and the state dict under this project's names of a 'clip' or 'official-fgclip'
    folder (`detect_checkpoint_kind`).

    A stock CLIP folder's weights keep their names and FG-CLIP's own parts are derived (`derived_weights`);
    an official release's weights are renamed by `OFFICIAL_KEY_MAP` and loaded as they are (after stage 2 its
    long tables and projection are trained weights: never re-derived). Whether the weights fit the config is
    checked when they are loaded into the model.
    """
    if kind not in ("clip", "official-fgclip"):
        raise ValueError(f"converted_checkpoint reads 'clip' or 'official-fgclip' folders, not {kind!r}")
    directory = Path(directory)
    config_dict = read_config(directory)
    state = {name: tensor for name, tensor in read_state_dict(directory).items() if name not in _BUFFER_NAMES}
    if kind == "official-fgclip":
        state = {OFFICIAL_KEY_MAP.get(name, name): tensor for name, tensor in state.items()}
    needed = (SHORT_POSITIONS, "text_projection.weight", "logit_scale") if kind == "clip" else (SHORT_POSITIONS,)
    for name in needed:
        if name not in state:
            raise UserError(f"{directory}: the weights have no {name}")
    if kind == "official-fgclip":
        # The table in the weights decides the short length (the release code sizes its long tables itself).
        text_config = config_dict.get("text_config") or {}
        config_dict["text_config"] = dict(text_config, max_position_embeddings=state[SHORT_POSITIONS].shape[0])
    config = fgclip_config_from_clip(config_dict)
    config.set_special_token_ids(folder_special_token_ids(directory, config.text_config.vocab_size))
    if kind == "clip":
        state.update({name: value for name, value in derived_weights(state, config).items() if name not in state})
    return config, state
