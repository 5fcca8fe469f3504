"""`python -m fgclip.pipeline`: raw images (or records) -> FineHARD-style training records.

Exit codes: 0 done; 1 some shards failed (their tracebacks are in OUTPUT_DIR/shards/<step>/*.error; re-run the
same command to retry only those); 2 bad usage or unusable input (one line on stderr, no traceback).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from, output_dir_option
from fgclip.outputs import prepare_output_dir
from fgclip.pipeline.config import PipelineConfig
from fgclip.pipeline.runner import run_pipeline

# What this command writes into --output_dir (anything else there needs --overwrite).
OWNED_OUTPUTS = ("data.jsonl", "stats.json", "stats.png", "pipeline_config.json", "shards", "webdataset")

EPILOG = """examples:
  # rule-based hard negatives for existing records (no model needed)
  python -m fgclip.pipeline --input train.jsonl --output_dir out/ --steps negatives
  # everything from a folder of raw images
  python -m fgclip.pipeline --images photos/ --output_dir out/ \\
      --caption_model llava-hf/llava-1.5-7b-hf --grounding_model google/owlv2-base-patch16-ensemble
Steps read and write the record format (shared/spec/data-format.md); a re-run resumes, skipping finished shards."""


@dataclass
class Source:
    """What the run reads: exactly one of the two."""

    images: Path | None = option(
        "a folder of raw images (searched recursively), one image, or a text file with one image path per line",
        None,
        metavar="DIR_OR_LIST",
    )
    input: Path | None = option(
        "a record file (.jsonl, or a .json list incl. the official FineHARD layout) to complete",
        None,
        metavar="RECORDS",
    )


@dataclass
class Output:
    """Where the run writes."""

    output_dir: Path = output_dir_option(
        "output folder (data.jsonl, stats, shards/); a folder holding an earlier run of this command resumes it"
    )
    overwrite: bool = option(
        "write into --output_dir even when it holds files this command did not write (never when it is an input)", False
    )


def _sections() -> dict[str, type]:
    """The config dataclass of each section of `PipelineConfig` (captions, ..., run), by field name."""
    hints = typing.get_type_hints(PipelineConfig)
    return {
        field.name: hints[field.name]
        for field in dataclasses.fields(PipelineConfig)
        if dataclasses.is_dataclass(hints[field.name])
    }


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m fgclip.pipeline",
        description="Build FineHARD-style training data: long/short captions, referring expressions, grounded boxes,\n"
        "hard negatives, filters and stats. Writes OUTPUT_DIR/data.jsonl, OUTPUT_DIR/stats.json and stats.png.",
        epilog=EPILOG,
    )
    io = parser.add_argument_group("input and output")
    parser.add_options(Source, io.add_mutually_exclusive_group(required=True))
    parser.add_options(Output, io)
    parser.add_options(PipelineConfig, io)  # --steps
    for section in _sections().values():  # each section's title is its dataclass's docstring
        parser.add_options(section, section.__doc__)
    return parser


def config_from(args) -> PipelineConfig:
    return options_from(
        args, PipelineConfig, **{name: options_from(args, section) for name, section in _sections().items()}
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    source, output, config = options_from(args, Source), options_from(args, Output), config_from(args)
    prepare_output_dir(
        output.output_dir,
        inputs=[source.images, source.input],
        owned=OWNED_OUTPUTS,
        overwrite=output.overwrite,
        option="--output_dir",
        what="files this command did not write",
    )
    report = run_pipeline(config, output.output_dir, images=source.images, input_file=source.input)
    if report.failed:
        for result in sorted(report.failed, key=lambda r: r.index):
            print(f"error: shard {result.index}: {result.error}", file=sys.stderr)
        print(f"{len(report.failed)} shard(s) failed; re-run the same command to retry them", file=sys.stderr)
        return 1
    stats = report.stats
    print(
        f"wrote {report.data_file}: {stats['images']} images, {stats['regions']} regions, "
        f"{stats['negatives']} hard negatives; stats in {report.data_file.parent / 'stats.json'}"
    )
    if stats["drop_reasons"]:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["drop_reasons"].items()))
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
