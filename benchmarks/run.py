"""Run one benchmark (or all of them), print its table and write its JSON.

    python -m benchmarks.run NAME [--smoke] [--device cpu|cuda|auto] [--output_dir DIR] [...]
    python -m benchmarks.run all --device cuda --output_dir results/   # every benchmark, one JSON each
    python -m benchmarks.NAME [...]                                     # the same as `run NAME`

Every figure is a ratio against a reference run in this process on the same data, shape and machine,
or an absolute figure written next to the device it was measured on. `--smoke` runs tiny shapes with
one repetition (what CI runs, in seconds); its numbers mean nothing.

A benchmark module provides `run(settings) -> benchmarks.harness.Report`. A module owned elsewhere (the
trainer's `benchmarks/default_experiment.py`) may instead provide `main(argv) -> dict`: its numeric
top-level values become the report's figures and the whole dict its details. Options after `--` are
passed to such a `main`.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from benchmarks.settings import BenchSettings
from fgclip.cli import CommandParser, entry_point, option, options_from, run
from fgclip.errors import UserError

if TYPE_CHECKING:  # loaded after parsing: --help and usage errors need no torch
    from benchmarks.harness import Report

# name -> (module, one-line description); `all` runs them in this order.
BENCHMARKS = {
    "train_step": ("benchmarks.train_step", "stage-1 step vs open_clip's step (same towers, batch, precision, AdamW)"),
    "stage2": ("benchmarks.stage2", "stage-2 step vs stage-1 step on the same images, and what each lever saves"),
    "loss_memory": (
        "benchmarks.loss_memory",
        "peak loss memory per rank at global batches 1k-32k (local loss + gather)",
    ),
    "data_loading": ("benchmarks.data_loading", "records/s of the JSONL and shard loaders; share of step time waiting"),
    "encoding": ("benchmarks.encoding", "eval encoding images/s and texts/s vs open_clip; embedding-cache effect"),
    "lmm_generation": ("benchmarks.lmm_generation", "POPE questions/s batched vs one at a time, identical answers"),
    "determinism": ("benchmarks.determinism", "stage-2 step time with deterministic kernels / without (same process)"),
}
EXTERNAL = {
    "default_experiment": ("benchmarks.default_experiment", "the trainer's embedded default experiment (tiny, CPU)"),
    "lmm_miniature": (
        "benchmarks.lmm_miniature",
        "LLaVA miniature: stage-1 vs stage-2 FG-CLIP tower (POPE F1, attributes, boxes)",
    ),
}


@dataclass
class RunOptions:
    """Which benchmark, and how its result is named and shown (the rest is `BenchSettings`)."""

    name: str = option("which benchmark to run (see the list below), or 'all'", positional=True)
    tag: str | None = option(
        "suffix of the JSON file name (NAME-TAG.json), to keep runs with other options apart", None
    )
    quiet: bool = option("no progress bars", False)


def build_parser() -> CommandParser:
    listing = "\n".join(f"  {name:<16} {text}" for name, (_, text) in {**BENCHMARKS, **EXTERNAL}.items())
    parser = CommandParser(
        prog="python -m benchmarks.run",
        description="Measured speed and memory of fgclip against reference implementations, in one process.",
        epilog=f"benchmarks:\n{listing}\n  {'all':<16} every benchmark above except default_experiment and "
        "lmm_miniature\n\nOptions after `--` go to a benchmark with its own options (default_experiment, "
        "lmm_miniature).",
    )
    parser.add_options(RunOptions)
    parser.add_options(BenchSettings, "how to run")
    return parser


def check_options(options: RunOptions, settings: BenchSettings) -> list[str]:
    """The benchmarks to run; `UserError` for an unknown name, a bad tag or device, or an unusable folder."""
    names = list(BENCHMARKS) if options.name == "all" else [options.name]
    if options.name != "all" and options.name not in {**BENCHMARKS, **EXTERNAL}:
        raise UserError(f"unknown benchmark {options.name!r}; choose from {', '.join([*BENCHMARKS, *EXTERNAL, 'all'])}")
    if options.tag is not None and not options.tag.replace("-", "").replace("_", "").isalnum():
        raise UserError("--tag may hold letters, digits, '-' and '_' only")
    settings.torch_device  # noqa: B018 - resolved now, so a bad --device fails before any benchmark loads
    if settings.output_dir is not None:
        try:
            settings.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--output_dir {settings.output_dir}: {error.strerror or error}") from error
    return names


def report_from_result(name: str, result: dict, settings: BenchSettings) -> Report:
    """A `Report` for a benchmark whose `main` returns a dict of results."""
    from benchmarks.harness import Figure, Report, describe_device

    figures = [
        Figure(key, float(value), "")
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return Report(name, figures, result, describe_device(settings.torch_device), settings.as_dict())


def run_benchmark(name: str, settings: BenchSettings, passthrough: Sequence[str] = ()) -> Report:
    """Import and run one benchmark; returns its `Report`."""
    module_name = {**BENCHMARKS, **EXTERNAL}[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise UserError(f"{module_name.replace('.', '/')}.py is not in this checkout") from error
        raise UserError(f"{name} needs the package '{error.name}', which is not installed") from error
    if hasattr(module, "run"):
        return module.run(settings)
    result = module.main(list(passthrough))
    if not isinstance(result, dict):
        raise UserError(f"{module_name}.main returned {type(result).__name__}, not a dict of results")
    return report_from_result(name, result, settings)


def _emit(report: Report, settings: BenchSettings, tag: str | None, argv: Sequence[str]) -> None:
    report.command = " ".join(["python -m benchmarks.run", *argv])  # the options as given, for RESULTS.md
    print(report.markdown())
    if settings.output_dir is not None:
        print(f"wrote {report.write(settings.output_dir, tag)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    argv, passthrough = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    options = options_from(args, RunOptions)
    settings = options_from(args, BenchSettings, progress=not options.quiet)
    names = check_options(options, settings)
    if options.quiet:
        from benchmarks.settings import silence_progress_bars

        silence_progress_bars()
    failed = []
    for name in names:
        started = time.time()
        try:
            report = run_benchmark(name, settings, passthrough)
        except Exception as error:  # noqa: BLE001 - `all` goes on to the next benchmark and says what broke
            if len(names) == 1:
                raise
            kind = "" if isinstance(error, UserError) else f" failed: {type(error).__name__}"
            print(f"error: {name}{kind}: {error}", file=sys.stderr)
            failed.append(name)
            continue
        _emit(report, settings, options.tag, [name if item == "all" else item for item in argv])
        print(f"({name}: {time.time() - started:.0f} s)\n")
    if failed:
        print(f"error: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_as_main(name: str) -> NoReturn:
    """`python -m benchmarks.NAME [options]`: the same as `python -m benchmarks.run NAME [options]`."""
    sys.exit(run(main, [name, *sys.argv[1:]]))


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
