"""Checkpoint conversions: stock CLIP -> FG-CLIP, official FG-CLIP release -> this project, and
FG-CLIP -> a plain `CLIPVisionModel` folder for LLaVA-style models.

Each is one function here and one sub-command of `python -m fgclip.convert`. The imports are data-only:
config.json -> `FGCLIPConfig` (legacy keys read as transformers reads them), weights -> renamed weights.
Folders are read as the Hub has them: the special-token ids come from the folder's tokenizer files, never
from a config's legacy `eos_token_id: 2`, and every folder is checked (config, whole weight files) before
use, so a bad one is a one-line `CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

from fgclip.errors import UserError
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.modeling import FGCLIPModel
from fgclip.model_card import Provenance, write_model_card
from fgclip.tokenizer import (
    CLIP_SPECIAL_TOKEN_IDS,
    FGCLIPTokenizer,
    SpecialTokenIds,
    TokenizerFilesError,
    folder_special_token_ids,
)
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


# Keys of a CLIP config.json that describe the file, not the model (dropped when building an FG-CLIP config).
_FILE_KEYS = ("model_type", "architectures", "transformers_version", "auto_map", "_name_or_path", "_commit_hash")
# Weight names older transformers versions saved (persistent position-id buffers); never weights.
_BUFFER_NAMES = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
# The FG-CLIP parts a stock CLIP checkpoint does not have (derived from its short parts on import).
_FGCLIP_ONLY = frozenset({"long_text_projection.weight", "long_text_positions.original",
                          "long_text_positions.residual", "logit_scale_region", "logit_scale_hard"})


def _read_config(directory: Path) -> dict:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory} has no config.json: not a Hugging Face model folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_file} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file} must hold a JSON object, not {type(config).__name__}")
    return config


def weight_files(directory: Path) -> list[Path]:
    """The weight files a folder's model is loaded from, in transformers' order of preference: one
    safetensors file, sharded safetensors, one PyTorch `.bin`, sharded `.bin`. `CheckpointError` when none."""
    for single, index_name in (("model.safetensors", "model.safetensors.index.json"),
                               ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (directory / single).is_file():
            return [directory / single]
        index_file = directory / index_name
        if index_file.is_file():
            try:
                weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise CheckpointError(f"{index_file} is not a valid weight index ({error})") from error
            missing = [name for name in shards if not (directory / name).is_file()]
            if missing:
                raise CheckpointError(f"{index_file} lists {missing[0]}, which is not in the folder "
                                      f"({len(missing)} of {len(shards)} shards missing)")
            return [directory / name for name in shards]
    raise CheckpointError(f"{directory} has no model.safetensors or pytorch_model.bin (nor a sharded index)")


def _damaged(path: Path, reason: object) -> CheckpointError:
    text = str(reason).strip()
    text = text.splitlines()[0] if text else type(reason).__name__
    return CheckpointError(f"{path} is damaged ({text}): an interrupted download or copy? Fetch the file again")


def check_weight_files(directory: Path) -> list[Path]:
    """`weight_files`, each checked to be whole (a safetensors header that covers the file, a complete zip
    archive for `.bin`) without reading the weights. `CheckpointError` names the damaged file."""
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


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All weights of a folder: safetensors or PyTorch `.bin`, single file or sharded with an index."""
    state: dict[str, torch.Tensor] = {}
    for path in check_weight_files(directory):
        try:
            state.update(_load_weight_file(path))
        except Exception as error:  # any failure to read a weight file is a damaged file
            raise _damaged(path, error) from error
    return state


def _load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


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


def detect_checkpoint_kind(directory: str | Path) -> str:
    """'fgclip' (this project), 'clip' (stock HF CLIP) or 'official-fgclip' (the v1.0 release layout).

    Also checks that the weight files are there and whole, so that every command that loads a model fails
    in its first second, in one line naming the file, on a folder it cannot use.
    """
    directory = Path(directory)
    if directory.is_file():
        raise CheckpointError(f"{directory} is a file; give the model folder (the one holding config.json and the "
                              "weights)")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a folder")
    config = _read_config(directory)
    model_type = config.get("model_type")
    config_file = directory / "config.json"
    if model_type == FGCLIPConfig.model_type:
        check_weight_files(directory)
        return "fgclip"
    if model_type == "clip":
        for key in ("text_config", "vision_config"):
            if not isinstance(config.get(key, {}), dict):
                raise CheckpointError(f"{config_file}: {key} must be a JSON object")
        check_weight_files(directory)
        official = ("FGCLIPModel" in (config.get("architectures") or [])
                    or "text_filip_projection.weight" in _weight_names(directory))
        return "official-fgclip" if official else "clip"
    if model_type in ("clip_vision_model", "clip_text_model"):
        raise CheckpointError(f"{config_file}: model_type '{model_type}' is a single CLIP tower (e.g. an exported "
                              "vision tower); FG-CLIP needs a dual encoder: a CLIP, FG-CLIP or official FG-CLIP folder")
    if model_type is None:
        raise CheckpointError(f"{config_file} has no model_type: not a Hugging Face model config")
    raise CheckpointError(f"{config_file} describes a '{model_type}' model, which FG-CLIP does not read; give an "
                          "FG-CLIP folder, a CLIP folder (model_type 'clip') or an official FG-CLIP release")


def read_text_vocab_size(directory: Path) -> int:
    """Rows of the text model's token embedding, from config.json (CLIP's 49,408 when unstated)."""
    text_config = _read_config(directory).get("text_config") or {}
    return int(text_config.get("vocab_size", CLIPTextConfig().vocab_size))


def checkpoint_special_token_ids(directory: Path, vocab_size: int | None = None) -> SpecialTokenIds:
    """The special-token ids of the tokenizer a checkpoint folder carries (CLIP's when it carries none),
    as a `CheckpointError` when its files cannot give a usable end-of-text token."""
    try:
        return folder_special_token_ids(directory, vocab_size)
    except TokenizerFilesError as error:
        raise CheckpointError(str(error)) from error


def fgclip_config_from_clip(clip_config: CLIPConfig | dict, special_token_ids: SpecialTokenIds | None = None,
                            **overrides) -> FGCLIPConfig:
    """An `FGCLIPConfig` with the towers, projection size and temperature of a CLIP config (a config object
    or a config.json dict as it is, legacy `*_config_dict` keys included), and the tokenizer's real
    special-token ids (CLIP's by default; never the legacy `eos_token_id: 2` of the Hub's OpenAI configs)."""
    values = clip_config.to_dict() if isinstance(clip_config, CLIPConfig) else dict(clip_config)
    for key in _FILE_KEYS:
        values.pop(key, None)
    values.update(overrides)
    config = FGCLIPConfig.from_dict(values)
    config.set_special_token_ids(special_token_ids or CLIP_SPECIAL_TOKEN_IDS)
    config.architectures = ["FGCLIPModel"]
    return config


def _load_into_fgclip(directory: Path, config: FGCLIPConfig, state: dict[str, torch.Tensor],
                      allowed_missing: frozenset[str]) -> FGCLIPModel:
    """An `FGCLIPModel` from `config` holding `state`; `CheckpointError` when the names do not fit."""
    state = {name: tensor for name, tensor in state.items() if name not in _BUFFER_NAMES}
    model = FGCLIPModel(config)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state) - allowed_missing, set(state) - expected
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not fit its config.json (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that contradict the config
        raise CheckpointError(f"{directory}: weights do not fit its config.json: "
                              f"{str(error).strip().splitlines()[-1].strip()}") from error
    return model


def fgclip_from_clip(directory: str | Path, dtype: torch.dtype | None = None) -> FGCLIPModel:
    """FG-CLIP initialised from a stock CLIP folder: long tables stretched, long projection copied.

    A data-only conversion: config.json -> `FGCLIPConfig`, the folder's weights under their own names."""
    directory = Path(directory)
    kind = detect_checkpoint_kind(directory)
    if kind != "clip":
        raise CheckpointError(f"{directory} is not a stock CLIP checkpoint but {_KIND_WORDS[kind]}")
    config = fgclip_config_from_clip(_read_config(directory))
    config.set_special_token_ids(checkpoint_special_token_ids(directory, config.text_config.vocab_size))
    model = _load_into_fgclip(directory, config, read_state_dict(directory), _FGCLIP_ONLY)
    model.reset_long_text_from_short()
    return model.to(dtype) if dtype is not None else model


_KIND_WORDS = {"fgclip": "an FG-CLIP folder of this project", "clip": "a stock CLIP folder",
               "official-fgclip": "an official FG-CLIP release (use from-official)"}


def fgclip_from_official(directory: str | Path, dtype: torch.dtype | None = None) -> FGCLIPModel:
    """Import an official FG-CLIP release folder. Its trained long tables and projection are loaded as
    they are (after stage 2 they are trained weights, so they are never re-derived).

    A data-only conversion: config.json -> `FGCLIPConfig`, weights renamed by `OFFICIAL_KEY_MAP`."""
    directory = Path(directory)
    kind = detect_checkpoint_kind(directory)
    if kind != "official-fgclip":
        raise CheckpointError(f"{directory} is not an official FG-CLIP release but {_KIND_WORDS[kind]}")
    config_dict = _read_config(directory)
    renamed = {OFFICIAL_KEY_MAP.get(name, name): tensor for name, tensor in read_state_dict(directory).items()}
    short_table = renamed.get("text_model.embeddings.position_embedding.weight")
    if short_table is None:
        raise CheckpointError(f"{directory}: the weights have no text_model.embeddings.position_embedding.weight")
    config_dict["text_config"] = dict(config_dict.get("text_config") or {}, max_position_embeddings=short_table.shape[0])
    # The release code hard-codes CLIP's special tokens; the folder's tokenizer files say the same.
    config = fgclip_config_from_clip(config_dict)
    config.set_special_token_ids(checkpoint_special_token_ids(directory, config.text_config.vocab_size))
    model = _load_into_fgclip(directory, config, renamed, frozenset())
    return model.to(dtype) if dtype is not None else model


def save_with_processors(model: FGCLIPModel, directory: str | Path, tokenizer: FGCLIPTokenizer | None = None,
                         provenance: Provenance | None = None) -> None:
    """`save_pretrained` plus the tokenizer (CLIP's unless given), FG-CLIP's image processor (square
    resize, no centre crop) and a model card (`fgclip.model_card`; `provenance` says how the weights came to
    be), so the folder is self-contained and ready for the Hub. The saved config carries the saved tokenizer's
    special-token ids, so that every later load pools where that tokenizer ends a text."""
    directory = Path(directory)
    tokenizer = tokenizer or FGCLIPTokenizer()
    ids = tokenizer.special_token_ids
    if ids.eos >= model.config.text_config.vocab_size:
        raise CheckpointError(f"the tokenizer's end-of-text id {ids.eos} is outside the model's "
                              f"{model.config.text_config.vocab_size}-token vocabulary")
    model.config.set_special_token_ids(ids)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(directory)
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
