"""Tiny faithful copies of the LLaVA-side folders users download: a Vicuna/Llama LM and llava-hf's LLaVA-1.5.

    make_llava_hub_copy("lmsys/vicuna-7b-v1.5", tmp_path / "vicuna")        # or vicuna_7b_v1_5(folder)
    make_llava_hub_copy("llava-hf/llava-1.5-7b-hf", tmp_path / "llava")     # or llava_1_5_7b_hf(folder)

Both hold tiny random weights (LM width 32, tower width 48 at 336 px / patch 14 like the tiny copy of
qihoo360/fg-clip-large, 2 layers each) but the real files' names, config keys, special-token ids,
tokenizer kind and processor settings. The tokenizer is a real SentencePiece BPE model (Llama's trainer
settings: byte fallback, split digits, `<unk>` 0, `<s>` 1, `</s>` 2, no pad piece) trained here on a small
corpus to exactly 32,000 pieces, so every special-token id and the added-token ids (`<image>` 32000,
`<pad>` 32001) are the real ones.

What was checked against public copies of the real files (searched 2026-11, several independent copies):
- llava-hf/llava-1.5-7b-hf `config.json` (transformers 4.36 era; three copies agree): `ignore_index` -100,
  `image_token_index` 32000, `pad_token_id` 32001, `projector_hidden_act` gelu, `vocab_size` 32064,
  `vision_feature_layer` -2, `vision_feature_select_strategy` default, `tie_word_embeddings` false,
  `torch_dtype` float16, a partial `text_config` (`_name_or_path` lmsys/vicuna-7b-v1.5, LlamaForCausalLM,
  `max_position_embeddings` 4096, `rms_norm_eps` 1e-05, `vocab_size` 32064: widths left to the Llama defaults)
  and a partial `vision_config` (1024/336/4096/clip_vision_model/16 heads/24 layers/patch 14/
  `projection_dim` 768/`vocab_size` 32000). The tiny copy adds the widths it changes to the two sub-configs.
- its `preprocessor_config.json` (CLIPImageProcessor, shortest edge 336, centre crop 336, OpenAI mean/std,
  resample 3, `processor_class` LlavaProcessor) and its chat template (`USER: ` / `ASSISTANT:` roles, images
  first, answers in `{% generation %}` blocks followed by a space, no BOS and no EOS in the template).
- lmsys/vicuna-7b-v1.5 `config.json` (one public copy, read up to `torch_dtype` float16: every key and value
  but the widths; `transformers_version` 4.31.0, `use_cache` and `vocab_size` 32000 after it are not read), its
  file list (a public download script: `pytorch_model-0000{1,2}-of-00002.bin` + index, `tokenizer.model`,
  `tokenizer_config.json`, `special_tokens_map.json`, `generation_config.json`; no `tokenizer.json`, no
  safetensors), and that its
  `generation_config.json` sets `temperature` 0.9 and `top_p` 0.6 without `do_sample` (a LLaVA user's
  reproduction notes: saving a model derived from it fails until those two lines are deleted).
Not checked against a copy (written as transformers' LLaVA conversion script and the files' usual layout
make them): llava-hf's `processor_config.json` (image token, `num_additional_image_tokens` 1, patch 14,
strategy default), `generation_config.json`, `tokenizer_config.json` (`padding_side` left, added tokens
32000/32001), `added_tokens.json`, the 4.36 weight names (`language_model.model.*`, `language_model.lm_head`,
`vision_tower.vision_model.*`, `multi_modal_projector.*`) and Vicuna's `tokenizer_config.json` /
`special_tokens_map.json` (no pad token, as the issue describes; FastChat's own copies of older Vicunas list
`<unk>` as pad). `make_llava_hub_copy` adds the `.cache/huggingface/` metadata `hf download --local-dir` leaves
(tests/hub_copies/clip.py writes it).
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import random
import string
from pathlib import Path

import torch

VOCAB_SIZE = 32000  # Llama's SentencePiece vocabulary
IMAGE_TOKEN_INDEX, PAD_TOKEN_INDEX, LLAVA_VOCAB_SIZE = 32000, 32001, 32064  # llava-hf pads the vocabulary to 64
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# llava-hf/llava-1.5-7b-hf chat_template.json, verbatim
LLAVA_HF_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# words the project's tests and evaluations put into prompts and answers, so they tokenise into few pieces
CORPUS = [
    (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    ),
    "USER: What colour is the picture? ASSISTANT: It is red. It is green. It is blue. It is yellow.",
    (
        "Is there a dog in the image? Is there a red square in the image? Answer the question using a single word or "
        "phrase. Yes No yes no"
    ),
    (
        "Please provide the bounding box coordinate of the region this sentence describes: the dog [0.12, 0.30, 0.55, "
        "0.91] [0.00, 0.25, 0.50, 1.00]"
    ),
    (
        "Describe the image briefly. Which description matches the object? Answer with the option's letter from the "
        "given choices directly. A. B. C. D. a red wooden car, a small black cat, two blue metal chairs"
    ),
]


def _filler_lines(seed: int = 0) -> list[str]:
    """Made-up words (every 3-letter string and some 4-letter ones) so BPE reaches 32,000 pieces."""
    rng = random.Random(seed)
    words = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)]
    rng.shuffle(words)
    lines = [" ".join(words[start : start + 12]) for start in range(0, len(words), 12)]
    lines += [" ".join(rng.choice(words) + rng.choice(string.ascii_lowercase) for _ in range(12)) for _ in range(2000)]
    return lines


@functools.lru_cache(maxsize=1)
def llama_sentencepiece_model() -> bytes:
    """A SentencePiece BPE model with Llama's trainer settings and exactly 32,000 pieces (~0.3 s)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 50 + _filler_lines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def _write_json(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n")


def _token(content: str, **extra) -> dict:
    """A token entry as tokenizer files write it (`added_tokens_decoder` entries add `special`)."""
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, **extra}


def _save_sharded(state: dict[str, torch.Tensor], folder: Path, shards: int, kind: str) -> None:
    """Weights split into `shards` files with their index, as the Hub folders ship them: `pytorch_model-0000k-of-
    0000n.bin` + `pytorch_model.bin.index.json` (kind "bin", Vicuna v1.5) or `model-0000k-of-0000n.safetensors` +
    `model.safetensors.index.json` (kind "safetensors", llava-hf)."""
    from safetensors.torch import save_file

    stem = {"bin": "pytorch_model", "safetensors": "model"}[kind]
    names = list(state)
    per_shard = -(-len(names) // shards)
    weight_map, total = {}, 0
    for index in range(shards):
        file = f"{stem}-{index + 1:05d}-of-{shards:05d}.{kind}"
        part = {name: state[name].contiguous() for name in names[index * per_shard : (index + 1) * per_shard]}
        if kind == "bin":
            torch.save(part, folder / file)
        else:
            save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
        total += sum(tensor.numel() * tensor.element_size() for tensor in part.values())
    _write_json(folder / f"{stem}.{kind}.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def vicuna_7b_v1_5(
    folder: str | Path, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 4, seed: int = 0
) -> Path:
    """A tiny `lmsys/vicuna-7b-v1.5`: its config keys, fp16 weights in two `.bin` shards, SentencePiece
    `tokenizer.model` only (no `tokenizer.json`), no pad token, no `<image>` token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "_name_or_path": "vicuna-7b-v1.5",
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": 2 * hidden_size,
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.31.0",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }
    _write_json(folder / "config.json", config)
    _write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": 1,
            "eos_token_id": 2,
            "max_length": 4096,
            "pad_token_id": 0,
            "temperature": 0.9,
            "top_p": 0.6,
            "transformers_version": "4.31.0",
        },
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if not k.startswith("_")}))
    _save_sharded({name: tensor.half() for name, tensor in model.state_dict().items()}, folder, 2, "bin")
    (folder / "tokenizer.model").write_bytes(llama_sentencepiece_model())
    special = {
        name: {"__type": "AddedToken", **_token(token)}
        for name, token in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))
    }
    _write_json(
        folder / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            **special,
            "clean_up_tokenization_spaces": False,
            "legacy": False,
            "model_max_length": 4096,
            "pad_token": None,
            "padding_side": "right",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {name: {k: v for k, v in token.items() if k != "__type"} for name, token in special.items()},
    )
    return folder


def _llava_hf_tokenizer(folder: Path):
    """Vicuna's tokenizer with `<image>` (32000) and `<pad>` (32001) added as the conversion script adds them."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    source = folder / "_vicuna_tokenizer"
    source.mkdir()
    (source / "tokenizer.model").write_bytes(llama_sentencepiece_model())
    _write_json(
        source / "tokenizer_config.json",
        {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False},
    )
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    for file in source.iterdir():
        file.unlink()
    source.rmdir()
    tokenizer.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_TOKEN_INDEX, PAD_TOKEN_INDEX]
    return tokenizer


def _old_llava_weight_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 names -> the 4.36 names the llava-hf safetensors files carry."""
    renamed = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            name = "language_model.lm_head.weight"
        elif name.startswith("model.language_model."):
            name = "language_model.model." + name.removeprefix("model.language_model.")
        elif name.startswith("model.vision_tower."):
            name = "vision_tower.vision_model." + name.removeprefix("model.vision_tower.")
        elif name.startswith("model.multi_modal_projector."):
            name = name.removeprefix("model.")
        renamed[name] = tensor.contiguous()
    return renamed


def llava_1_5_7b_hf(
    folder: str | Path,
    hidden_size: int = 32,
    num_layers: int = 2,
    vision_hidden_size: int = 48,
    vision_layers: int = 2,
    image_size: int = 336,
    patch_size: int = 14,
    seed: int = 0,
) -> Path:
    """A tiny `llava-hf/llava-1.5-7b-hf`: CLIP ViT tower at 336 px / patch 14 (576 image tokens), Vicuna LM
    with vocabulary 32064, its config keys, processor files, chat template and tokenizer files, and fp16
    weights under the 4.36 names in three safetensors shards."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text_widths = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    }
    config = {
        "architectures": ["LlavaForConditionalGeneration"],
        "ignore_index": -100,
        "image_token_index": IMAGE_TOKEN_INDEX,
        "model_type": "llava",
        "pad_token_id": PAD_TOKEN_INDEX,
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "lmsys/vicuna-7b-v1.5",
            "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": 4096,
            "model_type": "llama",
            "rms_norm_eps": 1e-05,
            "torch_dtype": "float16",
            "vocab_size": LLAVA_VOCAB_SIZE,
            **text_widths,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.36.0.dev0",
        "vision_config": {
            "hidden_size": vision_hidden_size,
            "image_size": image_size,
            "intermediate_size": 4 * vision_hidden_size,
            "model_type": "clip_vision_model",
            "num_attention_heads": 4,
            "num_hidden_layers": vision_layers,
            "patch_size": patch_size,
            "projection_dim": 768,
            "vocab_size": 32000,
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vocab_size": LLAVA_VOCAB_SIZE,
    }
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(LlavaConfig(**config))
    _save_sharded(
        _old_llava_weight_names({k: v.half() for k, v in model.state_dict().items()}), folder, 3, "safetensors"
    )
    _write_json(folder / "config.json", config)
    _write_json(
        folder / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": PAD_TOKEN_INDEX,
            "transformers_version": "4.36.0.dev0",
        },
    )
    tokenizer = _llava_hf_tokenizer(folder)
    tokenizer.save_pretrained(str(folder))  # tokenizer.json; the other tokenizer files are written below as shipped
    (folder / "tokenizer.model").write_bytes(llama_sentencepiece_model())
    _write_json(
        folder / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": {
                str(index): _token(token, special=True)
                for index, token in (
                    (0, "<unk>"),
                    (1, "<s>"),
                    (2, "</s>"),
                    (IMAGE_TOKEN_INDEX, "<image>"),
                    (PAD_TOKEN_INDEX, "<pad>"),
                )
            },
            "additional_special_tokens": [],
            "bos_token": "<s>",
            "clean_up_tokenization_spaces": False,
            "eos_token": "</s>",
            "legacy": False,
            "model_max_length": 1000000000000000019884624838656,
            "pad_token": "<pad>",
            "padding_side": "left",
            "processor_class": "LlavaProcessor",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
            "trust_remote_code": False,
            "unk_token": "<unk>",
            "use_default_system_prompt": False,
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {
            name: _token(token)
            for name, token in (
                ("bos_token", "<s>"),
                ("eos_token", "</s>"),
                ("pad_token", "<pad>"),
                ("unk_token", "<unk>"),
            )
        },
    )
    _write_json(folder / "added_tokens.json", {"<image>": IMAGE_TOKEN_INDEX, "<pad>": PAD_TOKEN_INDEX})
    _write_json(
        folder / "processor_config.json",
        {
            "image_token": "<image>",
            "num_additional_image_tokens": 1,
            "patch_size": patch_size,
            "processor_class": "LlavaProcessor",
            "vision_feature_select_strategy": "default",
        },
    )
    _write_json(
        folder / "preprocessor_config.json",
        {
            "crop_size": {"height": image_size, "width": image_size},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": OPENAI_MEAN,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": OPENAI_STD,
            "processor_class": "LlavaProcessor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": image_size},
        },
    )
    _write_json(folder / "chat_template.json", {"chat_template": LLAVA_HF_CHAT_TEMPLATE})
    return folder


LLAVA_HUB_FOLDERS = {"lmsys/vicuna-7b-v1.5": vicuna_7b_v1_5, "llava-hf/llava-1.5-7b-hf": llava_1_5_7b_hf}


def make_llava_hub_copy(repo_id: str, directory: str | Path, seed: int = 0) -> Path:
    """A tiny faithful copy of the Hub folder `repo_id` (a key of `LLAVA_HUB_FOLDERS`) in `directory`, as
    `hf download repo_id --local-dir directory` leaves it (with its `.cache/huggingface/` metadata)."""
    from tests.hub_copies.clip import write_download_metadata

    folder = LLAVA_HUB_FOLDERS[repo_id](directory, seed=seed)
    write_download_metadata(repo_id, folder)
    return folder
