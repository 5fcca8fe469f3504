"""Markdown tables from benchmark JSON files, for benchmarks/RESULTS.md.

    python -m benchmarks.tables DIR_OR_FILES...    # e.g. the folder benchmarks/gpu_suite.sh wrote

Each file becomes a section with the device, date and command that produced it, and its figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError


@dataclass
class TablesOptions:
    paths: list[Path] = option("result files, or folders whose *.json are read", positional=True)


def report_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m benchmarks.tables", description="Print markdown tables of benchmark result files (NAME.json)."
    )
    parser.add_options(TablesOptions)
    options = options_from(parser.parse_args(argv), TablesOptions)
    files = report_files(options.paths)
    if not files:
        raise UserError("no .json result files found")
    from benchmarks.harness import Report  # loads torch: after the options are checked

    for file in files:
        try:
            report = Report.from_json(json.loads(file.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{file} is not a benchmark result file ({type(error).__name__}: {error})") from error
        print(report.markdown())
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
