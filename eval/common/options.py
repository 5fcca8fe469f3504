"""The options the evaluations share, as config dataclasses: each command's parser derives from them
(`fgclip.cli`), so a default is written once, here. Standard library only: `--help` loads no torch.

A command whose output folder holds other files says so by overriding `output_dir`'s help in a subclass
(the field keeps its place, its `--out` alias and its check).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fgclip.cli import CommandParser, OptionGroup, non_negative_int, option, positive_int


@dataclass
class EncoderConfig:
    """How to run the model: batch size, device, autocast precision, image-decoding workers."""

    batch_size: int = option("images or texts per forward pass", 64, type=positive_int)
    device: str = option("'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'", "auto")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "autocast precision: 'auto' is bf16 on a GPU that supports it (else fp16) and fp32 on CPU; fp16 needs a GPU",
        "auto",
    )
    num_workers: int = option(
        "image-decoding worker processes; 0 decodes in the main process (default: min(4, cores))",
        default_factory=lambda: min(4, os.cpu_count() or 1),
        type=non_negative_int,
    )


@dataclass
class ModelOption:
    model: Path = option(
        "model folder: this project's FG-CLIP folder, a stock Hugging Face CLIP folder (baseline) or "
        "an official FG-CLIP release folder; the kind is detected"
    )


@dataclass
class CacheOptions:
    cache_dir: Path | None = option(
        "where embeddings are cached, keyed by model weights, inputs (file stats) and encoding options, so re-running "
        "another metric does not re-encode (default: $FGCLIP_EVAL_CACHE or ~/.cache/fgclip/eval)",
        None,
    )
    no_cache: bool = option("neither read nor write cached embeddings", False)


@dataclass
class OutputFolder:
    """Where a command writes, checked before any work (`eval.common.cli.prepare_output`)."""

    output_dir: Path = option(
        "output folder: results.json (metrics, model, data, counts, time), results.md (a table) and PNG plots; a "
        "folder holding this evaluation's earlier results is written again",
        aliases=["out"],
    )
    overwrite: bool = option(
        "write into --output_dir even when it holds files this evaluation did not write (never when it is an input)",
        False,
    )


@dataclass
class OutputOptions(OutputFolder):
    """The output of an evaluation that scores given items (and may have to skip some)."""

    strict: bool = option(
        "exit with code 2 when any given item could not be scored (results.json is still written, "
        "with complete: false and the counts by reason)",
        False,
    )


def encoder_parser(
    prog: str,
    description: str | None,
    *groups: OptionGroup,
    epilog: str | None = None,
    cache: bool = True,
    output: type = OutputOptions,
) -> CommandParser:
    """The command line of an encoder benchmark: its own `groups`, then the ones every encoder benchmark has:
    model and compute (`ModelOption`, `EncoderConfig`), the embedding cache (`CacheOptions`, unless `cache` is
    False) and the output (`output`)."""
    shared = [(ModelOption, "model and compute"), (EncoderConfig, "model and compute")]
    shared += [(CacheOptions, "embedding cache")] if cache else []
    options = [*groups, *shared, (output, "output")]
    return CommandParser(prog=prog, description=description, epilog=epilog, options=options)
