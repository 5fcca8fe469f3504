"""Answer questions about images with any stock LLaVA folder: batched, greedy, resumable.

`load_lmm` uses only `LlavaForConditionalGeneration.from_pretrained` and `AutoProcessor.from_pretrained`,
so it runs folders from `lmm_integration.build`, llava-hf releases or anything else of that shape.
`answer_all` batches questions (left padding, KV cache, greedy unless a temperature is given), shows a
progress bar with ETA and appends each batch to an answers JSONL; run it again and it only asks what
is not answered yet. `compare_batched_to_sequential` checks that batching does not change answers:
in float32 it does not (CPU and H100); in bfloat16 a few near-tied answers can change with the batch
composition (5 of 64 on a random LLaVA-shaped model on an H100), which also applies to resumed runs.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from eval.common.cli import resolve_device
from eval.lmm.answers_file import AnswerWriter, check_same_prompts, question_key, read_answers
from eval.lmm.boxes import expand_to_square, mean_background
from eval.lmm.options import GenerationSettings
from eval.lmm.prompting import format_prompt
from fgclip.errors import UserError
from fgclip.images import to_rgb

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedLMM:
    """A LLaVA model and its processor, ready to generate."""

    model: torch.nn.Module
    processor: object
    name: str
    device: torch.device
    dtype: torch.dtype
    pad_color: tuple[int, int, int]


@dataclass
class PromptItem:
    """One question about one image. `extra` is copied into the answers file line."""

    question_id: object
    image: Path
    prompt: str  # the question as the user writes it; the chat format is applied at generation
    extra: dict = field(default_factory=dict)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UserError(f"--dtype must be auto or one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def load_lmm(model_dir: str | Path, settings: GenerationSettings) -> LoadedLMM:
    """Load a LLaVA folder (weights, tokenizer, image processor) for batched generation."""
    from transformers import AutoConfig, AutoProcessor, LlavaConfig, LlavaForConditionalGeneration

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir} is not a model folder (no config.json)")
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
    dtype = resolve_dtype(settings.dtype, device)
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


def _generation_config(lmm: LoadedLMM, settings: GenerationSettings):
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


def load_image(path: Path) -> Image.Image | None:
    """The image as RGB, or None when it is missing or unreadable (the caller counts it)."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, UnidentifiedImageError):
        return None


def prepare_inputs(lmm: LoadedLMM, images: Sequence[Image.Image], prompts: Sequence[str], settings: GenerationSettings) -> dict:
    """Processor tensors for one batch, on the model's device: left-padded `input_ids` (B, T),
    `attention_mask` (B, T) and `pixel_values` (B, 3, S, S) in the model dtype.

    images: RGB PIL images (padded to a square here when settings.pad_to_square).
    prompts: questions without the chat format.
    """
    if settings.pad_to_square:
        images = [expand_to_square(image, lmm.pad_color) for image in images]
    texts = [format_prompt(lmm.processor, prompt, settings.prompt_format) for prompt in prompts]
    bos = lmm.processor.tokenizer.bos_token
    # a chat template that writes the BOS itself (lmm_integration's does) must not get a second one
    add_special_tokens = not (bos and all(text.startswith(bos) for text in texts))
    inputs = lmm.processor(images=list(images), text=texts, return_tensors="pt", padding=True,
                           add_special_tokens=add_special_tokens)
    inputs = {name: value.to(lmm.device) for name, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(lmm.dtype)
    return inputs


@torch.no_grad()
def generate_answers(
    lmm: LoadedLMM, images: Sequence[Image.Image], prompts: Sequence[str], settings: GenerationSettings
) -> list[str]:
    """One batch: raw answer strings (special tokens removed, stripped), in input order."""
    inputs = prepare_inputs(lmm, images, prompts, settings)
    output = lmm.model.generate(**inputs, generation_config=_generation_config(lmm, settings))
    new_tokens = output[:, inputs["input_ids"].shape[1]:]  # left padding: every prompt ends at the same column
    answers = lmm.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [answer.strip() for answer in answers]


@dataclass
class RunSummary:
    """What `answer_all` did; `answers` holds every answer in the file for the given items."""

    answers: dict[str, str]
    num_items: int
    num_resumed: int
    num_generated: int
    num_missing_image: int
    num_unreadable_image: int
    seconds: float

    def add_counts(self, counts: dict) -> None:
        """Add what this run did (answered, resumed, generated, skipped images) to a command's `counts`."""
        for key, value in self.counts().items():
            if key != "questions":
                counts[key] = counts.get(key, 0) + value

    def counts(self) -> dict[str, int]:
        return {
            "questions": self.num_items,
            "answered": len(self.answers),
            "resumed_from_answers_file": self.num_resumed,
            "generated_now": self.num_generated,
            "skipped_missing_image": self.num_missing_image,
            "skipped_unreadable_image": self.num_unreadable_image,
        }


def answer_all(
    lmm: LoadedLMM,
    items: Sequence[PromptItem],
    answers_path: str | Path,
    settings: GenerationSettings,
    description: str = "answering",
) -> RunSummary:
    """Answer every item not yet in `answers_path`, appending after each batch.

    Items whose image is missing or unreadable are skipped and counted (their answers stay missing, and
    the scorers count missing answers as wrong). Raises UserError when the file holds answers to
    other prompts, when question ids repeat, or when none of the images to answer exist.
    """
    started = time.time()
    answers_path = Path(answers_path)
    keys = [question_key(item.question_id) for item in items]
    if len(set(keys)) != len(keys):
        raise UserError("question ids repeat; every question needs its own id")
    existing = read_answers(answers_path)
    check_same_prompts(existing, {key: item.prompt for key, item in zip(keys, items)}, answers_path)
    todo = [item for key, item in zip(keys, items) if key not in existing.answers]
    present = [item for item in todo if item.image.is_file()]
    if todo and not present:
        folder = todo[0].image.parent
        raise UserError(f"none of the {len(todo)} images to answer exist (first: {todo[0].image}; folder {folder})")
    missing, unreadable = len(todo) - len(present), 0
    if missing:
        print(f"warning: {missing} questions skipped: image file not found (first: {next(i.image for i in todo if not i.image.is_file())})")
    torch.manual_seed(settings.seed)
    generated: dict[str, str] = {}
    try:
        with AnswerWriter(answers_path, model_id=lmm.name) as writer, tqdm(
            total=len(present), desc=description, unit="q", dynamic_ncols=True
        ) as progress:
            for start in range(0, len(present), settings.batch_size):
                batch = present[start : start + settings.batch_size]
                loaded = [(item, load_image(item.image)) for item in batch]
                usable = [(item, image) for item, image in loaded if image is not None]
                unreadable += len(loaded) - len(usable)
                if usable:
                    texts = generate_answers(lmm, [image for _, image in usable], [item.prompt for item, _ in usable],
                                             settings)
                    writer.write((item.question_id, item.prompt, text, item.extra)
                                 for (item, _), text in zip(usable, texts))
                    generated.update((question_key(item.question_id), text) for (item, _), text in zip(usable, texts))
                progress.update(len(batch))
    except KeyboardInterrupt:
        print(f"interrupted: the answers written so far are kept in {answers_path}; run again to resume",
              file=sys.stderr)
        raise
    if unreadable:
        print(f"warning: {unreadable} questions skipped: image file unreadable")
    answers = {key: existing.answers[key] for key in keys if key in existing.answers}
    answers.update(generated)
    return RunSummary(
        answers=answers,
        num_items=len(items),
        num_resumed=len(items) - len(todo),
        num_generated=len(generated),
        num_missing_image=missing,
        num_unreadable_image=unreadable,
        seconds=time.time() - started,
    )


@dataclass
class ConsistencyReport:
    """Batched vs one-at-a-time answers for the same questions (greedy decoding should agree)."""

    num_items: int
    mismatches: list[dict]
    batched_seconds: float
    one_at_a_time_seconds: float

    @property
    def identical(self) -> bool:
        return not self.mismatches


def compare_batched_to_sequential(
    lmm: LoadedLMM, items: Sequence[PromptItem], settings: GenerationSettings
) -> ConsistencyReport:
    """Answer `items` in batches of settings.batch_size and one by one; list every answer that differs.

    A mismatch means left padding leaks into the answers (a masking or position bug, or low-precision
    drift); the benchmarks use this to show that batching is safe for a given model and dtype.
    """
    images = [load_image(item.image) for item in items]
    if any(image is None for image in images):
        raise UserError("compare_batched_to_sequential needs every image to be readable")
    started = time.time()
    batched: list[str] = []
    for start in range(0, len(items), settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        batched += generate_answers(lmm, images[chunk], [item.prompt for item in items[chunk]], settings)
    batched_seconds = time.time() - started
    started = time.time()
    single = [generate_answers(lmm, [image], [item.prompt], settings)[0] for item, image in zip(items, images)]
    one_seconds = time.time() - started
    mismatches = [
        {"question_id": item.question_id, "batched": a, "one_at_a_time": b}
        for item, a, b in zip(items, batched, single)
        if a != b
    ]
    return ConsistencyReport(len(items), mismatches, batched_seconds, one_seconds)
