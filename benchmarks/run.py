"""Run one benchmark (or all of them), print its table and write its JSON.

    python -m benchmarks.run NAME [--smoke] [--device cpu|cuda|auto] [--out DIR] [...]
    python -m benchmarks.run all --device cuda --out results/     # every benchmark, one JSON each
    python -m benchmarks.NAME [...]                                # the same as `run NAME`

Every figure is a ratio against a reference run in this process on the same data, shape and machine,
or an absolute figure written next to the device it was measured on. `--smoke` runs tiny shapes with
one repetition (what CI runs, in seconds); its numbers mean nothing.

A benchmark module provides `run(settings) -> benchmarks.harness.Report`. A module owned elsewhere (the
trainer's `benchmarks/default_experiment.py`) may instead provide `main(argv) -> dict`: its numeric
top-level values become the report's figures and the whole dict its details. Options after `--` are
passed to such a `main`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import Figure, Report, describe_device
from benchmarks.settings import BenchmarkError, BenchSettings, resolve_device
from benchmarks.shapes import SHAPES

# name -> (module, one-line description); `all` runs them in this order.
BENCHMARKS = {
    "train_step": ("benchmarks.train_step", "stage-1 step vs open_clip's step (same towers, batch, precision, AdamW)"),
    "stage2": ("benchmarks.stage2", "stage-2 step vs stage-1 step on the same images, and what each lever saves"),
    "loss_memory": ("benchmarks.loss_memory", "peak loss memory per rank at global batches 1k-32k (local loss + gather)"),
    "data_loading": ("benchmarks.data_loading", "records/s of the JSONL and shard loaders; share of step time waiting"),
    "encoding": ("benchmarks.encoding", "eval encoding images/s and texts/s vs open_clip; embedding-cache effect"),
    "lmm_generation": ("benchmarks.lmm_generation", "POPE questions/s batched vs one at a time, identical answers"),
    "determinism": ("benchmarks.determinism", "stage-2 step time with deterministic kernels / without (same process)"),
}
EXTERNAL = {
    "default_experiment": ("benchmarks.default_experiment", "the trainer's embedded default experiment (tiny, CPU)"),
    "lmm_miniature": ("benchmarks.lmm_miniature", "LLaVA miniature: stage-1 vs stage-2 FG-CLIP tower (POPE F1, attributes, boxes)"),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<16} {text}" for name, (_, text) in {**BENCHMARKS, **EXTERNAL}.items())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Measured speed and memory of fgclip against reference implementations, in one process.",
        epilog=f"benchmarks:\n{listing}\n  {'all':<16} every benchmark above except default_experiment and lmm_miniature",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="which benchmark to run (see the list below), or 'all'")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, 1 repetition: checks that the benchmark runs (numbers mean nothing)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or auto (default cpu); cuda uses bf16 autocast and fused AdamW")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for NAME.json (default: print only; 'all' writes one file per benchmark)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="model shape: tiny, small (scaled-down ViT) or b16 (ViT-B/16 at 224); "
                             "default tiny with --smoke, small on CPU, b16 on GPU")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default: each benchmark's, e.g. 256 for stage 1 on GPU); "
                             "on GPU out-of-memory it is halved until it fits, and the report says so")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions; the median is reported (default: each benchmark's, 1 with --smoke)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed runs before timing (default: each benchmark's, 1 with --smoke)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the models under test (and their references) before timing")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak dense TFLOP/s of the device for MFU (default: 800 on H100, 790 on H200 in bf16; "
                             "no MFU otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and weights (default 0)")
    parser.add_argument("--lmm-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="lmm_generation only: model dtype (auto = float32: identical answers batched and "
                             "one at a time need it on a random-weight model)")
    parser.add_argument("--tag", default=None,
                        help="suffix of the JSON file name (NAME-TAG.json), to keep runs with other options apart")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    for option in ("batch_size", "repeats"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise BenchmarkError(f"--{option.replace('_', '-')} must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise BenchmarkError("--warmup must be 0 or more")
    if args.tag is not None and not args.tag.replace("-", "").replace("_", "").isalnum():
        raise BenchmarkError("--tag may hold letters, digits, '-' and '_' only")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise BenchmarkError("--peak-tflops must be positive")
    return BenchSettings(
        device=resolve_device(args.device), smoke=args.smoke, repeats=args.repeats, warmup=args.warmup,
        shape=args.shape, batch_size=args.batch_size, compile=args.compile, peak_tflops=args.peak_tflops,
        seed=args.seed, out=args.out, progress=not args.quiet, extra={"lmm_dtype": args.lmm_dtype},
    )


def report_from_result(name: str, result: dict, settings: BenchSettings) -> Report:
    """A `Report` for a benchmark whose `main` returns a dict of results."""
    figures = [Figure(key, float(value), "") for key, value in result.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return Report(name, figures, result, describe_device(settings.device), settings.as_dict())


def run_benchmark(name: str, settings: BenchSettings, passthrough: Sequence[str] = ()):
    """Import and run one benchmark; returns its `Report`."""
    module_name = {**BENCHMARKS, **EXTERNAL}[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise BenchmarkError(f"{module_name.replace('.', '/')}.py is not in this checkout") from error
        raise BenchmarkError(f"{name} needs the package '{error.name}', which is not installed") from error
    if hasattr(module, "run"):
        return module.run(settings)
    result = module.main(list(passthrough))
    if not isinstance(result, dict):
        raise BenchmarkError(f"{module_name}.main returned {type(result).__name__}, not a dict of results")
    return report_from_result(name, result, settings)


def _emit(report, settings: BenchSettings, tag: str | None, argv: Sequence[str]) -> None:
    report.command = " ".join(["python -m benchmarks.run", *argv])  # the options as given, for RESULTS.md
    print(report.markdown())
    if settings.out is not None:
        print(f"wrote {report.write(settings.out, tag)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: len(argv) - len(passthrough) - (1 if "--" in argv else 0)])
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    unknown = [name for name in names if name not in BENCHMARKS and name not in EXTERNAL]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; choose from {', '.join([*BENCHMARKS, *EXTERNAL, 'all'])}",
              file=sys.stderr)
        return 2
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # also silences the progress bars of the code under test
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        settings = settings_from_args(args)
        if settings.out is not None:
            settings.out.mkdir(parents=True, exist_ok=True)
    except (BenchmarkError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        started = time.time()
        try:
            report = run_benchmark(name, settings, passthrough)
        except BenchmarkError as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            if len(names) == 1:
                return 2
            failed.append(name)
            continue
        except Exception as error:  # noqa: BLE001 - `all` goes on to the next benchmark and says what broke
            if len(names) == 1:
                raise
            print(f"error: {name} failed: {type(error).__name__}: {error}", file=sys.stderr)
            failed.append(name)
            continue
        _emit(report, settings, args.tag, [name if item == "all" else item for item in argv])
        print(f"({name}: {time.time() - started:.0f} s)\n")
    if failed:
        print(f"error: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
