"""Step 1: long and short captions from any Hugging Face image-text-to-text model.

The paper captioned with CogVLM2-19B; any model that `AutoProcessor` + `AutoModelForImageTextToText`
load (LLaVA, LLaVA-NeXT/OneVision, Qwen2-VL, Qwen2.5-VL, Idefics3, Gemma 3 ...) works by Hub name or local
folder, batched, in bfloat16 on GPU. The prompt goes through the processor's chat template; a model
without one takes `--caption_template` ("USER: <image>\\n{prompt} ASSISTANT:").
The short caption comes from a second prompt, or is the long caption's first sentence (Long-CLIP's rule).
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.pipeline.config import CaptionConfig, ModelLoading
from fgclip.pipeline.runtime import image_batches, load_pretrained, to_model_inputs

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])")


def first_sentence(text: str) -> str:
    """Long-CLIP's short caption: the text up to the end of its first sentence."""
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


class CaptionModel:
    """A processor and a generative image-text model, with batched greedy captioning."""

    def __init__(self, config: CaptionConfig, device: str, loading: ModelLoading | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config, self.device = config, device
        self.processor, self.model, self.dtype = load_pretrained(
            "the caption model", config.model, AutoProcessor, AutoModelForImageTextToText, device, loading
        )
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise UserError(f"the processor of {config.model!r} has no tokenizer; it cannot caption")
        tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
        if getattr(self.processor, "chat_template", None) is None and not config.template:
            raise UserError(
                f"{config.model!r} has no chat template: pass --caption_template with {{prompt}} and its image token"
            )

    def prompt_text(self, prompt: str) -> str:
        if self.config.template:
            return self.config.template.replace("\\n", "\n").format(prompt=prompt)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def generate(self, images: list, prompt: str, max_new_tokens: int) -> list[str]:
        """One caption per image for the same prompt."""
        text = self.prompt_text(prompt)
        inputs = self.processor(images=images, text=[text] * len(images), return_tensors="pt", padding=True)
        inputs = to_model_inputs(inputs, self.model, self.dtype)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [" ".join(t.split()) for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class CaptionStep:
    """Fills missing captions; the model is loaded only if some record needs one."""

    def __init__(self, config: CaptionConfig, device: str, loading: ModelLoading | None = None):
        self.config, self.device, self.loading = config, device, loading
        self.model: CaptionModel | None = None

    def __call__(self, records: list[Record], counts: Counter) -> list[Record]:
        overwrite = self.config.overwrite and self.config.model is not None
        todo = [r for r in records if overwrite or not r.long_caption]
        if todo and self.config.model is None:
            raise UserError("the captions step needs a model for records without captions: pass --caption_model")
        dropped: set[int] = set()
        for usable, images in image_batches(todo, self.config.batch_size, counts, dropped):
            if self.model is None:
                self.model = CaptionModel(self.config, self.device, self.loading)
            long_captions = self.model.generate(images, self.config.prompt, self.config.max_new_tokens)
            short_captions = (
                self.model.generate(images, self.config.short_prompt, self.config.short_max_new_tokens)
                if self.config.short_prompt
                else [None] * len(usable)
            )
            for record, long_caption, short_caption in zip(usable, long_captions, short_captions):
                record.long_caption = long_caption
                record.short_caption = short_caption or ""
                counts["long_captions_generated"] += 1
                counts["short_captions_generated"] += bool(short_caption)
                counts["empty_generated_captions"] += not long_caption
        for record in records:
            if id(record) not in dropped and record.long_caption and not record.short_caption:
                record.short_caption = first_sentence(record.long_caption)
                counts["short_captions_first_sentence"] += 1
        return [r for r in records if id(r) not in dropped]
