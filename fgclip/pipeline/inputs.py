"""The engine's input: a folder or list of raw images, or a record file, split into shards once.

Image paths become absolute while splitting (relative ones taken from the folder of the list or record
file), so every shard file and `OUT/data.jsonl` reads correctly wherever it is opened from.
Unusable input (bad JSON lines, invalid records, missing image files) is counted, never silently lost;
more than `max_bad_fraction` of it stops the run.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from fgclip.data.schema import BadRecord, Record, iter_record_file, write_records
from fgclip.pipeline.errors import PipelineError
from fgclip.pipeline.shards import INPUT_STAGE, ShardLayout

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def list_images(source: str | Path) -> list[str]:
    """Absolute image paths: every image file under a folder (sorted), or the lines of a list file."""
    source = Path(source)
    if source.is_dir():
        return sorted(
            os.path.abspath(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    if source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        return [os.path.abspath(source.parent / line) for line in lines if line and not line.startswith("#")]
    raise PipelineError(f"--images {source}: no such folder or list file")


def _fingerprint(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def read_image_records(source: str | Path, counts: Counter) -> tuple[list[Record], str]:
    paths = list_images(source)
    records = []
    for path in paths:
        if os.path.isfile(path):
            records.append(Record(image=path))
        else:
            counts["missing_image"] += 1
    counts["items"] += len(paths)
    return records, _fingerprint(paths)


def read_input_records(path: str | Path, counts: Counter) -> tuple[list[Record], str]:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"--input {path}: no such file")
    root = path.parent
    records = []
    for item in iter_record_file(path, require_captions=False):
        counts["items"] += 1
        if isinstance(item, BadRecord):
            counts["bad_record"] += 1
            continue
        item.image = os.path.abspath(item.resolve_image(root))
        if not os.path.isfile(item.image):
            counts["missing_image"] += 1
            continue
        records.append(item)
    return records, _fingerprint([hashlib.sha256(path.read_bytes()).hexdigest()])


def split_input(
    layout: ShardLayout, *, images: str | None, input_file: str | None, shard_size: int, max_bad_fraction: float
) -> dict:
    """Split the input into shard files once; a later run over the same input reuses them.

    Returns the manifest (`num_shards`, `input_counts`, ...).
    """
    if (images is None) == (input_file is None):
        raise PipelineError("give exactly one of --images DIR_OR_LIST and --input RECORDS")
    counts: Counter = Counter()
    if images is not None:
        records, fingerprint = read_image_records(images, counts)
        description = {"images": os.path.abspath(images)}
    else:
        records, fingerprint = read_input_records(input_file, counts)
        description = {"input": os.path.abspath(input_file)}
    existing = layout.read_manifest()
    if existing is not None:
        if existing["fingerprint"] != fingerprint or existing["shard_size"] != shard_size:
            raise PipelineError(
                f"{layout.out_dir} holds a run over other input or another --shard_size: "
                "use a new --out, or --fresh to discard it"
            )
        return existing
    bad = counts["items"] - len(records)
    if counts["items"] and bad / counts["items"] > max_bad_fraction:
        raise PipelineError(
            f"{bad} of {counts['items']} input items are unusable ({dict(counts)}); "
            f"more than --max_bad_fraction {max_bad_fraction}"
        )
    if not records:
        raise PipelineError(f"no usable input: {dict(counts)}")
    num_shards = (len(records) + shard_size - 1) // shard_size
    layout.remove_stage(INPUT_STAGE)
    for index in range(num_shards):
        write_records(layout.shard_path(INPUT_STAGE, index), records[index * shard_size : (index + 1) * shard_size])
    manifest = {
        **description,
        "fingerprint": fingerprint,
        "shard_size": shard_size,
        "num_shards": num_shards,
        "num_records": len(records),
        "input_counts": dict(counts),
    }
    layout.write_manifest(manifest)
    return manifest
