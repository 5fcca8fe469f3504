"""The options the LMM evaluations share, as config dataclasses: `GenerationSettings` (how a LLaVA model is
run) is both the runner's config and the commands' options, so each default is written once, here.
Standard library only: `--help` loads no torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eval.lmm.prompting import PROMPT_FORMATS
from fgclip.cli import CommandParser, option, positive_int
from fgclip.errors import UserError


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


@dataclass
class GenerationSettings:
    """How the model is run; the same for every LMM evaluation."""

    batch_size: int = option("questions per generate() call", 8, type=positive_int)
    max_new_tokens: int = option("longest answer in tokens", 32, type=positive_int)
    temperature: float = option("0 = greedy decoding, as LLaVA-1.5 evaluates; > 0 samples with this temperature", 0.0,
                                type=non_negative_float)
    device: str = option("'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N'", "auto")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "model weights dtype; 'auto' = bfloat16 on GPU, float32 on CPU. In bfloat16 a few answers with near-tied "
        "logits can depend on which questions share a batch (measured: 5 of 64 on a random model, 0 in float32); use "
        "float32 where answers must be bit-reproducible across batch sizes and resumes", "auto")
    pad_to_square: bool = option(
        "pad each image to a square with the image mean first, as LLaVA-1.5 (image_aspect_ratio pad) trains and "
        "evaluates; --no-pad-to-square gives the processor the image as it is. eval.localization also reads answer "
        "boxes as normalised to the padded square unless it is off (with --answers too)", True)
    prompt_format: str = option(
        "'auto' uses the folder's chat template when its processor has one, else the built-in LLaVA-1.5 format 'USER: "
        "<image>\\n<question> ASSISTANT:'; 'chat-template' requires the template; 'llava15' always uses the built-in "
        "format", "auto", choices=PROMPT_FORMATS)
    seed: int = option("random seed (sampling only)", 0)


@dataclass
class LMMModelOption:
    model: Path | None = option("LLaVA folder to run (stock LlavaForConditionalGeneration + processor); instead of "
                                "--answers", None)


def add_generation_options(parser: CommandParser, max_new_tokens: int) -> None:
    """--model and the `GenerationSettings` options, with this command's answer length as the default."""
    group = parser.add_options(LMMModelOption, "running a model (--model)")
    parser.add_options(GenerationSettings, group)
    parser.set_defaults(max_new_tokens=max_new_tokens)


def one_answer_source(answers: object, model: Path | None, model_needs: str = "") -> None:
    """Exactly one of --answers (score a file) and --model (run a model), or a one-line `UserError`."""
    if (answers is None) == (model is None):
        raise UserError(f"give exactly one of --answers (score a file) or --model{model_needs} (run a model)")
