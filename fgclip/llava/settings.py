"""How a LLaVA model is run, as option dataclasses: the runner's config and the commands' options at once, so each
default is written once, here. Standard library only: a command's `--help` loads no torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from fgclip.cli import option, positive_int
from fgclip.llava.prompting import PROMPT_FORMATS


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


@dataclass
class ChatSettings:
    """How one conversation is answered (`lmm_integration.chat`; the base of `GenerationSettings`)."""

    max_new_tokens: int = option("longest answer in tokens", 128, type=positive_int)
    temperature: float = option(
        "0 = greedy decoding, as LLaVA-1.5 evaluates; > 0 samples with this temperature", 0.0, type=non_negative_float
    )
    device: str = option("'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N'", "auto")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "model weights dtype; 'auto' = bfloat16 on GPU, float32 on CPU. In bfloat16 a few answers with near-tied "
        "logits can depend on which questions share a batch (measured: 5 of 64 on a random model, 0 in float32); use "
        "float32 where answers must be bit-reproducible across batch sizes and resumes",
        "auto",
    )
    pad_to_square: bool = option(
        "pad each image to a square with the image mean first, as LLaVA-1.5 (image_aspect_ratio pad) trains and "
        "evaluates; --no_pad_to_square gives the processor the image as it is (answer boxes are then read in the "
        "image's own frame)",
        True,
    )
    seed: int = option("random seed (sampling only)", 0)


@dataclass
class GenerationSettings(ChatSettings):
    """How a model answers many questions: in batches, each question prompted alone (the LMM evaluations)."""

    max_new_tokens: int = option("longest answer in tokens", 32, type=positive_int)
    batch_size: int = option("questions per generate() call", 8, type=positive_int)
    prompt_format: str = option(
        "'auto' uses the folder's chat template when its processor has one, else the built-in LLaVA-1.5 format 'USER: "
        "<image>\\n<question> ASSISTANT:'; 'chat-template' requires the template; 'llava15' always uses the built-in "
        "format",
        "auto",
        choices=PROMPT_FORMATS,
    )
