"""Command-line plumbing shared by the evaluations: the output and cache folder checks, input checks, the
device, help paragraphs. Standard library only, so a command answers `--help` before torch loads.

The contract itself (options from config dataclasses, `run(main)`: a `UserError` is one line and exit 2) is
`fgclip.cli`'s; the shared option dataclasses are in `eval.common.options`.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir

if TYPE_CHECKING:
    from eval.common.options import CacheOptions, OutputFolder


def default_cache_dir() -> Path:
    """`$FGCLIP_EVAL_CACHE`, else `~/.cache/fgclip/eval`."""
    env = os.environ.get("FGCLIP_EVAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fgclip" / "eval"


def usable_cache_dir(path: Path, option: str) -> Path:
    """`path` created as a folder, or a one-line `UserError` naming where it came from (`option`)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; the embedding cache needs a folder (or pass --no_cache)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"{option} {path}: cannot create the embedding cache folder ({error.strerror}); "
            "choose another or pass --no_cache"
        ) from error
    return path


def cache_dir(options: CacheOptions) -> Path | None:
    """The cache folder `CacheOptions` ask for (created), or None with --no_cache."""
    if options.no_cache:
        return None
    if options.cache_dir is not None:
        return usable_cache_dir(options.cache_dir, "--cache_dir")
    source = "$FGCLIP_EVAL_CACHE" if os.environ.get("FGCLIP_EVAL_CACHE") else "the default cache folder"
    return usable_cache_dir(default_cache_dir(), source)


def wrapped(text: str, width: int = 100) -> str:
    """A help paragraph wrapped for a formatter that prints epilogs as they are."""
    return textwrap.fill(" ".join(text.split()), width)


def owned_outputs(benchmarks: Iterable[str], names: Iterable[str]) -> Callable[[Path], bool]:
    """What an evaluation may write again in its output folder: its own file and folder `names`, and a
    results.json only when it records one of `benchmarks` (so another evaluation's results in the same folder
    are never replaced without --overwrite)."""
    benchmarks, names = set(benchmarks), set(names)

    def owned(entry: Path) -> bool:
        if entry.name == "results.json":
            try:
                return json.loads(entry.read_text(encoding="utf-8")).get("benchmark") in benchmarks
            except (OSError, ValueError, AttributeError):
                return False
        return entry.name in names

    return owned


def prepare_output(
    output: OutputFolder,
    inputs: Iterable[Path | None],
    owned: Callable[[Path], bool],
    cache: CacheOptions | None = None,
    what: str = "files this evaluation did not write",
) -> Path:
    """Check the output folder (`OutputFolder` options) and the embedding cache folder (`CacheOptions`)
    before any heavy work; returns the created output folder.

    Refuses (one line, exit 2) an output that is a file or one of `inputs`, or that holds what this evaluation
    did not write unless --overwrite is given; a cache folder that is a file or cannot be created.
    """
    out = prepare_output_dir(
        output.output_dir, inputs=inputs, owned=owned, overwrite=output.overwrite, option="--output_dir", what=what
    )
    if cache is not None:
        cache_dir(cache)
    return out


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} {path} is not a folder")
    return path
