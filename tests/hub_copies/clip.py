"""Tiny faithful copies of the CLIP and FG-CLIP folders users download from the Hugging Face Hub.

    make_hub_copy("openai/clip-vit-base-patch16", tmp_path / "clip")  # -> a folder laid out like the real one

Each copy has the real folder's file names, the real `config.json` keys (the legacy text config
`bos_token_id 0, eos_token_id 2, pad_token_id 1`, `text_config_dict` / `vision_config_dict` where the real
file has them, the activation, image and patch size), the real `preprocessor_config.json` (OpenAI's
legacy feature-extractor file: integer `size` / `crop_size`, shortest-edge resize + centre crop) and the
real tokenizer files (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json)
with CLIP's real 49,408-token BPE vocabulary, built from the BPE file open_clip ships. Only the widths and
depths are tiny (random weights), so everything runs in a second on a CPU.

Where the facts come from (read from public files with the project's `search` tool; what could not be
read is said so):

* `openai/clip-vit-base-patch32` config.json, read whole (a public copy, whaler404/Hf-Learn): the legacy
  4.16-era text/vision dicts (every `PretrainedConfig` key of that version), `text_config_dict: null`,
  `vision_config_dict: null`, `transformers_version: null`, quick_gelu, `bos 0 / eos 2 / pad 1`.
  `openai/clip-vit-base-patch16` is taken to be the same file with patch 16 (same upload; not read).
* `openai/clip-vit-large-patch14` config.json: its text part as copied into public Flux training code (a
  `CLIPL_CONFIG` dict, read): the same legacy text dict (eos 2) plus `text_config_dict` restating the sizes
  (hidden 768, intermediate 3072, heads 12, layers 12, projection 768), `torch_dtype: "float32"`. Its
  `vision_config_dict` (hidden 1024, intermediate 4096, heads 16, layers 24, patch 14, projection 768) is
  taken from the same pattern and from the Stable Diffusion safety checker, a CLIP-L derivative whose
  config was read; `-large-patch14-336` is taken to be the same file at 336 px (not read).
* `qihoo360/fg-clip-base` config.json, read whole (a public copy, zyyyyyyhhhhhh/fgclip-vad
  `fgclip-weight/config.json`): `architectures: ["FGCLIPModel"]`, `model_type: "clip"`, `auto_map`
  (`AutoConfig` / `AutoModelForCausalLM` -> `modeling_fgclip.*`), the legacy text dict (eos 2) of
  transformers 4.12 (no `cross_attention_hidden_size`), `text_config_dict: null`,
  `vision_config_dict: {"patch_size": 16}`, `torch_dtype: "float32"`. Its model card loads the tokenizer and
  image processor from the same folder and resizes images to a square before the processor. The weight
  names come from its `modeling_fgclip.py` / `modeling_clip.py` (read): `position_embedding_ori` /
  `_res` (248 slots), `text_filip_projection`, `logit_scale_finegraind`, `logit_scale_hardneg`; the position
  ids are non-persistent there, so they are not in its weights. `qihoo360/fg-clip-large` is taken to be the
  same layout with the large-336 towers and the `*_config_dict` of `openai/clip-vit-large-patch14-336`
  (not read).
* LAION's HF-format folders (`laion/CLIP-ViT-B-32-laion2B-s34B-b79K`): `hidden_act: "gelu"` in both towers
  and `*_config_dict` restating it with the sizes (the layout of laion/CLIP-ViT-H-14's config, from memory of
  the file, not read); a tokenizer that pads with "!" (id 0), as the OpenCLIP-derived tokenizers of Stable
  Diffusion 2 / SDXL do (tokenizer_config.json read) and as open_clip itself pads. A public issue
  (pharmapsychotic/clip-interrogator#24) suggests laion/CLIP-ViT-H-14's own folder may pad with
  <|endoftext|> instead; the code under test must handle both, and the OpenAI copies cover the other one.
* Tokenizer files: the OpenAI-style `tokenizer_config.json` with `AddedToken` dicts (`"__type"`), `errors`,
  `do_lower_case`, `model_max_length 77`, `pad_token "<|endoftext|>"` (read in Stable Diffusion's copy of
  `openai/clip-vit-large-patch14`'s tokenizer); `special_tokens_map.json` with the same tokens; merges.txt
  with the `#version: 0.2` header. The tokenizer.json here is the one transformers 5 writes for the same
  vocabulary (the Hub's was written by an older `tokenizers`; both load the same way).
* `preprocessor_config.json`: OpenAI's legacy file (`CLIPFeatureExtractor`, integer `size` and `crop_size`,
  `do_center_crop: true`, `resample 3`, CLIP's mean/std). The same file is assumed in the LAION and FG-CLIP
  folders (with 336 for the 336-px ones): not read.
* The OpenAI weight files come from transformers 4.16, whose CLIP position ids were persistent buffers:
  `text_model.embeddings.position_ids` and `vision_model.embeddings.position_ids` are in them (not read;
  a loader must ignore them either way).

* `hf download --local-dir` metadata (`.cache/huggingface/download/*.metadata`, `.gitignore`): read in
  huggingface_hub's `_local_folder.py`.

One deliberate deviation: transformers builds a whole default sub-config from a `*_config_dict` and lets it
override the full one, so the miniature's dicts restate the tiny sizes (the real ones restate the real
sizes; fg-clip-base's real `vision_config_dict` holds only the patch size, which with the defaults gives
its real ViT-B/16, but would give a full-size tower in a miniature).

Not reproduced: the flax/TF/`.bin` weight files, the content of the FG-CLIP releases' `modeling_*.py` (present,
as one-line stand-ins: this project never executes them), README/model cards, LAION's `open_clip_*` files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
VOCAB_SIZE = 49408
LONG_POSITIONS = 248  # FG-CLIP's long-text table (77 * 4 - 60)


@dataclass(frozen=True)
class TinyTowers:
    """The miniature's sizes; the text and vision widths differ on purpose (as in every real CLIP)."""

    text_hidden: int = 32
    text_heads: int = 4
    vision_hidden: int = 48
    vision_heads: int = 4
    layers: int = 2
    projection_dim: int = 24


@dataclass(frozen=True)
class HubClipFolder:
    """What distinguishes one real folder: its sizes, its config layout, its tokenizer."""

    repo_id: str
    image_size: int
    patch_size: int
    layout: str  # "openai-16" | "openai-large" | "laion" | "fgclip-official"
    name_or_path: str
    hidden_act: str = "quick_gelu"
    pad_token: str = "<|endoftext|>"
    towers: TinyTowers = field(default_factory=TinyTowers)

    @property
    def is_official_fgclip(self) -> bool:
        return self.layout == "fgclip-official"

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


HUB_FOLDERS: dict[str, HubClipFolder] = {
    folder.repo_id: folder
    for folder in (
        HubClipFolder("openai/clip-vit-base-patch16", 224, 16, "openai-16", "openai/clip-vit-base-patch16"),
        HubClipFolder("openai/clip-vit-large-patch14", 224, 14, "openai-large", "clip-vit-large-patch14/"),
        HubClipFolder(
            "openai/clip-vit-large-patch14-336", 336, 14, "openai-large", "openai/clip-vit-large-patch14-336"
        ),
        HubClipFolder(
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            224,
            32,
            "laion",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            hidden_act="gelu",
            pad_token="!",
        ),
        HubClipFolder("qihoo360/fg-clip-base", 224, 16, "fgclip-official", "fg-clip-base"),
        HubClipFolder("qihoo360/fg-clip-large", 336, 14, "fgclip-official", "fg-clip-large"),
    )
}
STOCK_CLIP_IDS = [name for name, folder in HUB_FOLDERS.items() if not folder.is_official_fgclip]
OFFICIAL_FGCLIP_IDS = [name for name, folder in HUB_FOLDERS.items() if folder.is_official_fgclip]

# ---------------------------------------------------------------------------------------------- config.json
# Every key transformers 4.16 wrote into a sub-config (openai/clip-vit-base-patch32, read whole), in file order.
_LEGACY_COMMON = {
    "_name_or_path": "",
    "add_cross_attention": False,
    "architectures": None,
    "attention_dropout": 0.0,
    "bad_words_ids": None,
    "bos_token_id": None,
    "chunk_size_feed_forward": 0,
    "cross_attention_hidden_size": None,
    "decoder_start_token_id": None,
    "diversity_penalty": 0.0,
    "do_sample": False,
    "dropout": 0.0,
    "early_stopping": False,
    "encoder_no_repeat_ngram_size": 0,
    "eos_token_id": None,
    "finetuning_task": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "hidden_act": "quick_gelu",
    "hidden_size": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": None,
    "is_decoder": False,
    "is_encoder_decoder": False,
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "layer_norm_eps": 1e-05,
    "length_penalty": 1.0,
    "max_length": 20,
    "min_length": 0,
    "model_type": None,
    "no_repeat_ngram_size": 0,
    "num_attention_heads": None,
    "num_beam_groups": 1,
    "num_beams": 1,
    "num_hidden_layers": None,
    "num_return_sequences": 1,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_scores": False,
    "pad_token_id": None,
    "prefix": None,
    "problem_type": None,
    "projection_dim": None,
    "pruned_heads": {},
    "remove_invalid_values": False,
    "repetition_penalty": 1.0,
    "return_dict": True,
    "return_dict_in_generate": False,
    "sep_token_id": None,
    "task_specific_params": None,
    "temperature": 1.0,
    "tie_encoder_decoder": False,
    "tie_word_embeddings": True,
    "tokenizer_class": None,
    "top_k": 50,
    "top_p": 1.0,
    "torch_dtype": None,
    "torchscript": False,
    "transformers_version": "4.16.0.dev0",
    "use_bfloat16": False,
}


def _tower_sizes(folder: HubClipFolder, tower: str) -> dict:
    """One tower's sizes under CLIP's sub-config keys (`tower`: "text" or "vision"), as every real file states them."""
    towers = folder.towers
    hidden, heads = (
        (towers.text_hidden, towers.text_heads) if tower == "text" else (towers.vision_hidden, towers.vision_heads)
    )
    sizes = {
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_attention_heads": heads,
        "num_hidden_layers": towers.layers,
        "projection_dim": towers.projection_dim,
    }
    if tower == "vision":
        sizes["patch_size"] = folder.patch_size
    return sizes


def _legacy_text_config(folder: HubClipFolder) -> dict:
    values = copy.deepcopy(_LEGACY_COMMON)
    values.update(
        _tower_sizes(folder, "text"),
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,  # the legacy ids every real OpenAI folder keeps
        hidden_act=folder.hidden_act,
        max_position_embeddings=77,
        model_type="clip_text_model",
        vocab_size=VOCAB_SIZE,
    )
    if folder.is_official_fgclip:  # written by transformers 4.12, which had no cross_attention_hidden_size
        del values["cross_attention_hidden_size"]
        values["transformers_version"] = "4.12.0.dev0"
    return dict(sorted(values.items()))


def _legacy_vision_config(folder: HubClipFolder) -> dict:
    values = copy.deepcopy(_LEGACY_COMMON)
    values.update(
        _tower_sizes(folder, "vision"),
        hidden_act=folder.hidden_act,
        image_size=folder.image_size,
        model_type="clip_vision_model",
    )
    if folder.is_official_fgclip:
        del values["cross_attention_hidden_size"]
        values["transformers_version"] = "4.12.0.dev0"
    return dict(sorted(values.items()))


def _size_overrides(folder: HubClipFolder, tower: str) -> dict:
    """A `*_config_dict` as the large / LAION files have it: the sizes that differ from CLIP's defaults.

    transformers (4.26+ and 5) builds a whole default sub-config from this dict and lets it override the
    full one, so in the miniature it restates the tiny sizes (the real file restates the real ones).
    """
    values = _tower_sizes(folder, tower)
    if tower == "vision" and folder.image_size != 224:
        values["image_size"] = folder.image_size
    if folder.hidden_act != "quick_gelu":
        values["hidden_act"] = folder.hidden_act
    return dict(sorted(values.items()))


def hub_config(folder: HubClipFolder) -> dict:
    """The folder's config.json as a dict, keys in the real file's order."""
    config = {
        "_name_or_path": folder.name_or_path,
        "architectures": ["FGCLIPModel"] if folder.is_official_fgclip else ["CLIPModel"],
    }
    if folder.is_official_fgclip:
        config["auto_map"] = {
            "AutoConfig": "modeling_fgclip.FGCLIPConfig",
            "AutoModelForCausalLM": "modeling_fgclip.FGCLIPModel",
        }
    config.update(
        {
            "initializer_factor": 1.0,
            "logit_scale_init_value": 2.6592,
            "model_type": "clip",
            "projection_dim": folder.towers.projection_dim,
            "text_config": _legacy_text_config(folder),
        }
    )
    if folder.layout == "openai-16":
        config.update(
            {
                "text_config_dict": None,
                "transformers_version": None,
                "vision_config": _legacy_vision_config(folder),
                "vision_config_dict": None,
            }
        )
    elif folder.layout == "fgclip-official" and folder.image_size == 224:
        # fg-clip-base as read: only the patch size is restated. The miniature restates its tiny sizes too
        # (transformers would otherwise build a full-width ViT-B/16 from the defaults; see _size_overrides).
        config.update(
            {
                "text_config_dict": None,
                "torch_dtype": "float32",
                "transformers_version": None,
                "vision_config": _legacy_vision_config(folder),
                "vision_config_dict": _size_overrides(folder, "vision"),
            }
        )
    else:  # the large OpenAI folders, LAION's, and fg-clip-large (which starts from clip-vit-large-patch14-336)
        config.update(
            {
                "text_config_dict": _size_overrides(folder, "text"),
                "torch_dtype": "float32",
                "transformers_version": None,
                "vision_config": _legacy_vision_config(folder),
                "vision_config_dict": _size_overrides(folder, "vision"),
            }
        )
    return config


# ------------------------------------------------------------------------------------ preprocessor_config.json
def hub_preprocessor_config(folder: HubClipFolder) -> dict:
    """OpenAI's legacy feature-extractor file: shortest-edge resize to `size`, centre crop to `crop_size`."""
    return {
        "crop_size": folder.image_size,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
        "size": folder.image_size,
    }


# --------------------------------------------------------------------------------------------- tokenizer files
def _added_token(content: str, with_type: bool) -> dict:
    token = {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    return {"__type": "AddedToken", **token} if with_type else token


def hub_tokenizer_config(folder: HubClipFolder) -> dict:
    return {
        "add_prefix_space": False,
        "bos_token": _added_token("<|startoftext|>", True),
        "do_lower_case": True,
        "eos_token": _added_token("<|endoftext|>", True),
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": folder.name_or_path,
        "pad_token": folder.pad_token,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": _added_token("<|endoftext|>", True),
    }


def hub_special_tokens_map(folder: HubClipFolder) -> dict:
    return {
        "bos_token": _added_token("<|startoftext|>", False),
        "eos_token": _added_token("<|endoftext|>", False),
        "pad_token": folder.pad_token,
        "unk_token": _added_token("<|endoftext|>", False),
    }


@lru_cache(maxsize=4)
def _tokenizer_file_bytes(pad_token: str) -> dict[str, bytes]:
    """vocab.json, merges.txt and tokenizer.json for CLIP's real vocabulary (built once per process)."""
    from fgclip.tokenizer import _clip_vocab_and_merges, build_clip_tokenizer

    vocab, merges = _clip_vocab_and_merges()
    fast = build_clip_tokenizer()
    if pad_token != fast.pad_token:
        fast.pad_token = pad_token
    with tempfile.TemporaryDirectory() as staging:
        fast.save_pretrained(staging)
        fast_json = (Path(staging) / "tokenizer.json").read_bytes()
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
        "merges.txt": ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode("utf-8"),
        "tokenizer.json": fast_json,
    }


def write_tokenizer_files(folder: HubClipFolder, directory: Path) -> None:
    """vocab.json, merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    for name, content in _tokenizer_file_bytes(folder.pad_token).items():
        (directory / name).write_bytes(content)
    (directory / "tokenizer_config.json").write_text(json.dumps(hub_tokenizer_config(folder), indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(hub_special_tokens_map(folder)) + "\n")


# --------------------------------------------------------------------------------------------------- weights
def hub_state_dict(folder: HubClipFolder, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tiny random weights under the real file's names."""
    from transformers import CLIPConfig, CLIPModel

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        config = CLIPConfig.from_dict(hub_config(folder))
        state = {name: tensor.detach().clone().contiguous() for name, tensor in CLIPModel(config).state_dict().items()}
        # Give the temperature a value no initialiser would produce (a trained CLIP's is ln(100)).
        state["logit_scale"] = torch.tensor(4.6052)
        if folder.is_official_fgclip:
            width, dim = folder.towers.text_hidden, folder.towers.projection_dim
            # The release's own names for its long-text parts and temperatures, with trained-looking values.
            state["text_model.embeddings.position_embedding_ori.weight"] = torch.randn(LONG_POSITIONS, width) * 0.02
            state["text_model.embeddings.position_embedding_res.weight"] = torch.randn(LONG_POSITIONS, width) * 0.02
            state["text_filip_projection.weight"] = torch.randn(dim, width) * width**-0.5
            state["logit_scale_finegraind"] = torch.tensor(4.1)
            state["logit_scale_hardneg"] = torch.tensor(3.7)
        else:
            # transformers 4.16 saved CLIP's position ids as persistent buffers.
            state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
            positions = folder.grid_size**2 + 1
            state["vision_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    finally:
        torch.random.set_rng_state(generator_state)
    return state


# ---------------------------------------------------------------------------------------------------- folder
def write_download_metadata(repo_id: str, directory: Path) -> None:
    """What `hf download REPO --local-dir DIR` leaves beside the files (huggingface_hub >= 0.23, read in its
    `_local_folder.py`): `.cache/huggingface/download/<file>.metadata` (commit, etag, timestamp) and a
    `.gitignore`. Code that lists a downloaded folder must not trip over it."""
    cache = directory / ".cache" / "huggingface"
    (cache / "download").mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    for path in sorted(directory.iterdir()):
        if path.is_file():
            etag = hashlib.sha256(path.read_bytes()).hexdigest()
            (cache / "download" / f"{path.name}.metadata").write_text(f"{commit}\n{etag}\n1735689600.0\n")


def make_hub_copy(repo_id: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny faithful copy of the Hub folder `repo_id` (a key of `HUB_FOLDERS`) into `directory`, as
    `hf download repo_id --local-dir directory` leaves it."""
    folder = HUB_FOLDERS[repo_id]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hub_config(folder), indent=2) + "\n")
    (directory / "preprocessor_config.json").write_text(json.dumps(hub_preprocessor_config(folder), indent=2) + "\n")
    write_tokenizer_files(folder, directory)
    save_file(hub_state_dict(folder, seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    if folder.is_official_fgclip:
        for name in ("modeling_clip.py", "modeling_fgclip.py"):
            (directory / name).write_text(
                f'"""Stands for the release\'s {name}, the remote code its auto_map names; '
                'fgclip never imports it (no trust_remote_code)."""\n'
            )
    write_download_metadata(repo_id, directory)
    return directory
