"""Markdown tables from benchmark JSON files, for benchmarks/RESULTS.md.

    python -m benchmarks.tables DIR_OR_FILES...    # e.g. the folder benchmarks/gpu_suite.sh wrote

Each file becomes a section with the device, date and command that produced it, and its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import Report


def report_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables",
                                     description="Print markdown tables of benchmark result files (NAME.json).")
    parser.add_argument("paths", nargs="+", type=Path, help="result files, or folders whose *.json are read")
    args = parser.parse_args(argv)
    files = report_files(args.paths)
    if not files:
        print("error: no .json result files found", file=sys.stderr)
        return 2
    for file in files:
        try:
            report = Report.from_json(json.loads(file.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"error: {file} is not a benchmark result file ({type(error).__name__}: {error})", file=sys.stderr)
            return 2
        print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
