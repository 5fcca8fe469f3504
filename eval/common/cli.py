"""Command-line plumbing shared by the encoder benchmarks: common options and the error contract.

Every benchmark's `main(argv)` raises `EvalError` for a problem with the user's input (a missing file,
a malformed annotation file, an empty class list); `run_main` turns it into one line on stderr and
exit code 2, so users see the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir


class EvalError(UserError):
    """A usage or data error: reported as one line, exit code 2."""


def resolve_device(name: str, error: type[EvalError] = EvalError):
    """`--device` as a `torch.device`: `auto` picks CUDA when there is one; a bad name or CUDA asked for
    without a GPU raises `error` (an `EvalError` kind, so the command exits 2 with one line)."""
    import torch  # here, not at the top: `--help` and the error contract need no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as cause:
        raise error(f"--device {name!r} is not a device name (use auto, cpu, cuda or cuda:N): {cause}") from cause
    if device.type == "cuda" and not torch.cuda.is_available():
        raise error(f"--device {name} asked for, but CUDA is not available here")
    return device


def default_cache_dir() -> Path:
    """`$FGCLIP_EVAL_CACHE`, else `~/.cache/fgclip/eval`."""
    env = os.environ.get("FGCLIP_EVAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fgclip" / "eval"


def usable_cache_dir(path: Path, option: str) -> Path:
    """`path` created as a folder, or a one-line `EvalError` naming where it came from (`option`)."""
    if path.exists() and not path.is_dir():
        raise EvalError(f"{option} {path} is a file; the embedding cache needs a folder (or pass --no-cache)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EvalError(f"{option} {path}: cannot create the embedding cache folder ({error.strerror}); "
                        "choose another or pass --no-cache") from error
    return path


def wrapped(text: str, width: int = 100) -> str:
    """A help paragraph wrapped for RawDescriptionHelpFormatter, which prints epilogs as they are."""
    return textwrap.fill(" ".join(text.split()), width)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model and the options of `eval.common.encoder.EncoderConfig`."""
    group = parser.add_argument_group("model and compute")
    group.add_argument(
        "--model", required=True, type=Path,
        help="model folder: this project's FG-CLIP folder, a stock Hugging Face CLIP folder (baseline) or an "
        "official FG-CLIP release folder; the kind is detected",
    )
    group.add_argument("--batch-size", type=positive_int, default=64, help="images or texts per forward pass (default 64)")
    group.add_argument(
        "--device", default="auto",
        help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N' (default auto)",
    )
    group.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="autocast precision: 'auto' is bf16 on a GPU that supports it (else fp16) and fp32 on CPU; "
        "fp16 needs a GPU (default auto)",
    )
    group.add_argument(
        "--num-workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
        help="image-decoding worker processes; 0 decodes in the main process (default min(4, cores))",
    )


def add_cache_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedding cache")
    group.add_argument(
        "--cache-dir", type=Path, default=None,
        help="where embeddings are cached, keyed by model weights, inputs (file stats) and encoding options, so "
        "re-running another metric does not re-encode (default $FGCLIP_EVAL_CACHE or ~/.cache/fgclip/eval)",
    )
    group.add_argument("--no-cache", action="store_true", help="neither read nor write cached embeddings")


def add_output_args(parser: argparse.ArgumentParser, help: str | None = None, strict: bool = True) -> None:
    """--out, --overwrite and (unless the command scores nothing that could be skipped) --strict."""
    parser.add_argument(
        "--out", required=True, type=Path,
        help=help or "output folder: results.json (metrics, model, data, counts, time), results.md (a table) and "
        "PNG plots; a folder holding this evaluation's earlier results is written again",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="write into --out even when it holds files this evaluation did not write (never when --out is an input)",
    )
    if not strict:
        return
    parser.add_argument(
        "--strict", action="store_true",
        help="exit with code 2 when any given item could not be scored (results.json is still written, with "
        "complete: false and the counts by reason)",
    )


def owned_outputs(benchmarks: Iterable[str], names: Iterable[str]) -> Callable[[Path], bool]:
    """What an evaluation may write again in its --out: its own file and folder `names`, and a results.json
    only when it records one of `benchmarks` (so another evaluation's results in the same folder are never
    replaced without --overwrite)."""
    benchmarks, names = set(benchmarks), set(names)

    def owned(entry: Path) -> bool:
        if entry.name == "results.json":
            try:
                return json.loads(entry.read_text(encoding="utf-8")).get("benchmark") in benchmarks
            except (OSError, ValueError, AttributeError):
                return False
        return entry.name in names

    return owned


def prepare_out(args: argparse.Namespace, inputs: Iterable[Path | None], owned: Callable[[Path], bool]) -> Path:
    """Check --out (and the embedding cache folder) before any heavy work; returns the created --out.

    Refuses (one line, exit 2) an --out that is a file or one of `inputs`, or that holds what this evaluation
    did not write unless --overwrite is given; a cache folder that is a file or cannot be created.
    """
    out = prepare_output_dir(args.out, inputs=inputs, owned=owned, overwrite=getattr(args, "overwrite", False),
                             what="files this evaluation did not write")
    if hasattr(args, "no_cache"):
        cache_dir_from_args(args)
    return out


def cache_dir(options) -> Path | None:
    """The cache folder `CacheOptions` ask for (created), or None with --no_cache."""
    if options.no_cache:
        return None
    if options.cache_dir is not None:
        return usable_cache_dir(options.cache_dir, "--cache_dir")
    source = "$FGCLIP_EVAL_CACHE" if os.environ.get("FGCLIP_EVAL_CACHE") else "the default cache folder"
    return usable_cache_dir(default_cache_dir(), source)


def prepare_output(output, inputs: Iterable[Path | None], owned: Callable[[Path], bool], cache=None) -> Path:
    """Check the output folder (`OutputOptions`) and the embedding cache folder (`CacheOptions`) before any
    heavy work; returns the created output folder.

    Refuses (one line, exit 2) an output that is a file or one of `inputs`, or that holds what this evaluation
    did not write unless --overwrite is given; a cache folder that is a file or cannot be created.
    """
    out = prepare_output_dir(output.output_dir, inputs=inputs, owned=owned, overwrite=output.overwrite,
                             option="--output_dir", what="files this evaluation did not write")
    if cache is not None:
        cache_dir(cache)
    return out


def cache_dir_from_args(args: argparse.Namespace) -> Path | None:
    """The cache folder the options ask for (created), or None with --no-cache."""
    if args.no_cache:
        return None
    if args.cache_dir is not None:
        return usable_cache_dir(args.cache_dir, "--cache-dir")
    source = "$FGCLIP_EVAL_CACHE" if os.environ.get("FGCLIP_EVAL_CACHE") else "the default cache folder"
    return usable_cache_dir(default_cache_dir(), source)


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise EvalError(f"{what} {path} does not exist")
    if not path.is_file():
        raise EvalError(f"{what} {path} is not a file")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise EvalError(f"{what} {path} is not a folder")
    return path


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a benchmark's `main`; data and usage errors (every `UserError`) become one stderr line and exit 2."""
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
