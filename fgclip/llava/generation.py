"""Load a LLaVA folder and generate answers in batches: the one path every LLaVA run takes (the LMM
evaluations, `lmm_integration.chat`, the benchmarks).

`load_lmm` uses only `LlavaForConditionalGeneration.from_pretrained` and `AutoProcessor.from_pretrained`, so it
runs folders from `lmm_integration.build`, llava-hf releases or anything else of that shape (dense-tower folders
too: the tower type is registered with the Auto classes first, `fgclip.auto`). `generate` answers a batch of full
text prompts (left padding, KV cache, greedy unless a temperature is given); `generate_answers` prompts single
questions in the settings' format first. In float32 batching does not change answers (CPU and H100); in
bfloat16 a few near-tied answers can change with the batch composition (5 of 64 on a random LLaVA-shaped model on
an H100).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from fgclip.errors import UserError
from fgclip.images import to_rgb
from fgclip.llava.boxes import expand_to_square, mean_background
from fgclip.llava.prompting import format_prompt
from fgclip.llava.settings import ChatSettings, GenerationSettings
from fgclip.runtime import default_dtype, dtype_by_name, resolve_device


@dataclass
class LoadedLMM:
    """A LLaVA model and its processor, ready to generate."""

    model: torch.nn.Module
    processor: object
    name: str
    device: torch.device
    dtype: torch.dtype
    pad_color: tuple[int, int, int]

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.processor, "chat_template", None))


def load_lmm(model_dir: str | Path, settings: ChatSettings) -> LoadedLMM:
    """Load a LLaVA folder (weights, tokenizer, image processor) for generation; a folder that is not one is a
    one-line `UserError`."""
    from transformers import AutoConfig, AutoProcessor, LlavaConfig, LlavaForConditionalGeneration

    from fgclip.auto import register_auto_classes

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"model folder not found or has no config.json: {model_dir}")
    register_auto_classes()  # a folder built with --vision_features dense has an fgclip tower type
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot read the config of {model_dir}: {str(error).splitlines()[0]}") from error
    if not isinstance(config, LlavaConfig):
        raise UserError(
            f"{model_dir} holds a '{config.model_type}' model; the LMM runs need a LLaVA folder "
            "(LlavaForConditionalGeneration + its processor)"
        )
    device = resolve_device(settings.device)
    dtype = default_dtype(device) if settings.dtype == "auto" else dtype_by_name(settings.dtype)
    try:
        processor = AutoProcessor.from_pretrained(model_dir)
        model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as error:  # missing/corrupt files, shape mismatches
        raise UserError(f"cannot load {model_dir}: {str(error).splitlines()[0]}") from error
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise UserError(f"{model_dir} has no LLaVA processor (image processor + tokenizer)")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.to(device).eval()
    image_mean = getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return LoadedLMM(model, processor, str(model_dir), device, dtype, mean_background(image_mean))


def read_image(path: str | Path) -> Image.Image | None:
    """The image as RGB, or None when it is missing or unreadable (the caller counts it or says so)."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, UnidentifiedImageError):
        return None


def generation_config(lmm: LoadedLMM, settings: ChatSettings):
    """The model's generation config with the settings' decoding: greedy (temperature 0) or sampling."""
    config = copy.deepcopy(lmm.model.generation_config)
    sampling = settings.temperature > 0
    config.update(
        max_new_tokens=settings.max_new_tokens,
        do_sample=sampling,
        num_beams=1,
        use_cache=True,
        pad_token_id=lmm.processor.tokenizer.pad_token_id,
        temperature=settings.temperature if sampling else None,
        top_p=None,
        top_k=None,
    )
    if config.eos_token_id is None:
        config.eos_token_id = lmm.processor.tokenizer.eos_token_id
    return config


def model_inputs(lmm: LoadedLMM, images: Sequence[Image.Image], texts: Sequence[str], settings: ChatSettings) -> dict:
    """Processor tensors for one batch, on the model's device: left-padded `input_ids` (B, T),
    `attention_mask` (B, T) and `pixel_values` (B, 3, S, S) in the model dtype.

    images: RGB PIL images (padded to a square here when settings.pad_to_square).
    texts: full prompts, one image token each (`prompt_texts`, or a rendered conversation).
    """
    if settings.pad_to_square:
        images = [expand_to_square(image, lmm.pad_color) for image in images]
    bos = lmm.processor.tokenizer.bos_token
    # a chat template that writes the BOS itself (lmm_integration's does) must not get a second one
    add_special_tokens = not (bos and all(text.startswith(bos) for text in texts))
    inputs = lmm.processor(
        images=list(images), text=list(texts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
    )
    inputs = {name: value.to(lmm.device) for name, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(lmm.dtype)
    return inputs


def prompt_texts(lmm: LoadedLMM, questions: Sequence[str], settings: GenerationSettings) -> list[str]:
    """Each question as a single-turn prompt in `settings.prompt_format`."""
    try:
        return [format_prompt(lmm.processor, question, settings.prompt_format) for question in questions]
    except ValueError as error:  # 'chat-template' asked for a folder without one
        raise UserError(f"{lmm.name}: {error}") from error


def prepare_inputs(
    lmm: LoadedLMM, images: Sequence[Image.Image], questions: Sequence[str], settings: GenerationSettings
) -> dict:
    """`model_inputs` for single questions (prompted in the settings' format)."""
    return model_inputs(lmm, images, prompt_texts(lmm, questions, settings), settings)


@torch.no_grad()
def generate(lmm: LoadedLMM, images: Sequence[Image.Image], texts: Sequence[str], settings: ChatSettings) -> list[str]:
    """One batch of full prompts: the answers (special tokens removed, stripped), in input order."""
    inputs = model_inputs(lmm, images, texts, settings)
    output = lmm.model.generate(**inputs, generation_config=generation_config(lmm, settings))
    new_tokens = output[:, inputs["input_ids"].shape[1] :]  # left padding: every prompt ends at the same column
    answers = lmm.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def generate_answers(
    lmm: LoadedLMM, images: Sequence[Image.Image], questions: Sequence[str], settings: GenerationSettings
) -> list[str]:
    """One batch of single questions: the raw answers, in input order."""
    return generate(lmm, images, prompt_texts(lmm, questions, settings), settings)
