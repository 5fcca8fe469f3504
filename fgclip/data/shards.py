"""Pack record files into webdataset `.tar` shards: one image + one `.json` record per sample.

    python -m fgclip.data.shards --records data.jsonl --output_dir shards/ --shard_size 10000

writes `shards/shard-000000.tar, ...` and `shards/shards.json` (file names and sample counts).
Train on them with `--data 'shards/shard-{000000..000012}.tar'` (or list the files). Invalid records
and missing or unreadable images are skipped, counted and listed, never packed.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.data.options import OutputFolderOptions
from fgclip.data.schema import BadRecord, iter_record_file
from fgclip.errors import UserError

DESCRIPTION = (
    "Pack fine-grained record files (JSONL, .json, FineHARD) into webdataset .tar shards (image + .json record per "
    "sample) for --data of scripts/pretrain_fgclip.py: OUTPUT_DIR/shard-NNNNNN.tar and OUTPUT_DIR/shards.json."
)
SHARD_NAME = re.compile(r"shard-\d{6}\.tar")


@dataclass
class ShardSummary:
    shards: list[dict] = field(default_factory=list)  # {"url": file name, "nsamples": n}
    written: int = 0
    skipped: list[BadRecord] = field(default_factory=list)

    @property
    def brace_pattern(self) -> str:
        """The `--data` pattern naming every shard written."""
        if not self.shards:
            return ""
        first, last = self.shards[0]["url"], self.shards[-1]["url"]
        return first if first == last else f"shard-{{{first[6:12]}..{last[6:12]}}}.tar"


def _image_extension(path: Path) -> str:
    from fgclip.data.readers import IMAGE_EXTENSIONS

    extension = path.suffix.lower().lstrip(".")
    return extension if extension in IMAGE_EXTENSIONS else "png"


def write_shards(
    record_files: Sequence[str | Path], out_dir: str | Path, shard_size: int = 10000, progress: bool = True
) -> ShardSummary:
    """Pack the valid records of `record_files` into shards of `shard_size` samples in `out_dir`."""
    import webdataset as wds
    from tqdm import tqdm

    from fgclip.data.readers import ImageError, LoadedRecord

    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ShardSummary()
    writer: wds.ShardWriter | None = None

    def shard_done(file_name: str) -> None:
        summary.shards.append({"url": Path(file_name).name, "nsamples": writer.count})

    writer = wds.ShardWriter(
        str(out_dir / "shard-%06d.tar"), maxcount=shard_size, maxsize=1e12, post=shard_done, verbose=0
    )
    try:
        for record_file in record_files:
            record_file = Path(record_file)
            if not record_file.is_file():
                raise UserError(f"record file not found: {record_file}")
            for item in tqdm(iter_record_file(record_file), desc=f"packing {record_file.name}", disable=not progress):
                if isinstance(item, BadRecord):
                    summary.skipped.append(item)
                    continue
                image_path = item.resolve_image(record_file.parent)
                try:
                    LoadedRecord(item, str(image_path), image_path=image_path).open_image()
                except ImageError as error:
                    summary.skipped.append(BadRecord(str(image_path), str(error)))
                    continue
                key = f"{summary.written:09d}"
                extension = _image_extension(image_path)
                record = item.to_json()
                record["image"] = f"{key}.{extension}"  # inside a shard the image is the sample's member
                writer.write({"__key__": key, extension: image_path.read_bytes(), "json": record})
                summary.written += 1
    finally:
        writer.close()
    # ShardWriter opens a first shard before any write; drop it when nothing went in.
    for shard in list(summary.shards):
        if shard["nsamples"] == 0:
            (out_dir / shard["url"]).unlink(missing_ok=True)
            summary.shards.remove(shard)
    manifest = {
        "shards": summary.shards,
        "written": summary.written,
        "skipped": len(summary.skipped),
        "skipped_examples": [f"{bad.source}: {bad.reason}" for bad in summary.skipped[:20]],
    }
    (out_dir / "shards.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return summary


@dataclass(kw_only=True)
class ShardOptions(OutputFolderOptions):
    records: list[str] = option(
        "record files (.jsonl or .json lists); relative image paths are read from the folder of each file",
        metavar="PATH",
    )
    shard_size: int = option("samples per shard", 10000, type=positive_int)


def build_parser() -> CommandParser:
    description = textwrap.fill(DESCRIPTION, 110)
    return CommandParser(prog="python -m fgclip.data.shards", description=description, options=[ShardOptions])


def owned_by_shards(path: Path) -> bool:
    """What this command writes into its output folder."""
    return path.name == "shards.json" or SHARD_NAME.fullmatch(path.name) is not None


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv), ShardOptions)
    for record_file in options.records:  # before the output folder is made
        if not Path(record_file).is_file():
            raise UserError(f"record file not found: {record_file}")
    out = options.prepare(owned_by_shards, inputs=options.records)
    for stale in out.glob("shard-*.tar"):  # a previous run's shards: a folder pattern would read them too
        if owned_by_shards(stale):
            stale.unlink()
    summary = write_shards(options.records, out, options.shard_size, progress=not options.quiet)
    print(
        f"wrote {summary.written} samples in {len(summary.shards)} shards to {options.output_dir}; "
        f"skipped {len(summary.skipped)} bad records"
    )
    for bad in summary.skipped[:5]:
        print(f"  skipped {bad.source}: {bad.reason}")
    if summary.shards:
        print(f"train with: --data '{Path(options.output_dir) / summary.brace_pattern}'")
    if summary.written == 0:
        raise UserError("no valid record to pack")
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
