"""Command-line options shared by the LMM runs, parsed once into `GenerationSettings`."""

from __future__ import annotations

import argparse

from eval.lmm.generation import GenerationSettings
from eval.lmm.prompting import PROMPT_FORMATS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_generation_args(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """--batch-size ... --seed: how the LLaVA model is run (only used with --model)."""
    group = parser.add_argument_group("generation (with --model)")
    group.add_argument("--batch-size", type=positive_int, default=8, help="questions per generate() call (default 8)")
    group.add_argument(
        "--max-new-tokens", type=positive_int, default=max_new_tokens,
        help=f"longest answer in tokens (default {max_new_tokens})",
    )
    group.add_argument(
        "--temperature", type=non_negative_float, default=0.0,
        help="0 = greedy decoding, as LLaVA-1.5 evaluates (default); > 0 samples with this temperature",
    )
    group.add_argument("--seed", type=int, default=0, help="random seed (sampling only; default 0)")
    group.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N'")
    group.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
        help="model weights dtype; 'auto' = bfloat16 on GPU, float32 on CPU (default auto). In bfloat16 a few "
        "answers with near-tied logits can depend on which questions share a batch (measured: 5 of 64 on a random "
        "model, 0 in float32); use float32 where answers must be bit-reproducible across batch sizes and resumes",
    )
    group.add_argument(
        "--no-pad-to-square", action="store_true",
        help="give the processor the image as it is; by default it is first padded to a square with the "
        "image mean, as LLaVA-1.5 (image_aspect_ratio pad) trains and evaluates. eval.localization also "
        "reads answer boxes as normalised to the padded square unless this is given (with --answers too)",
    )
    group.add_argument(
        "--prompt-format", choices=PROMPT_FORMATS, default="auto",
        help="'auto' uses the folder's chat template when its processor has one, else the built-in LLaVA-1.5 "
        "format 'USER: <image>\\n<question> ASSISTANT:'; 'chat-template' requires the template; 'llava15' "
        "always uses the built-in format (default auto)",
    )


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        device=args.device,
        dtype=args.dtype,
        pad_to_square=not args.no_pad_to_square,
        prompt_format=args.prompt_format,
        seed=args.seed,
    )
