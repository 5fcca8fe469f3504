"""The engine's input: a folder or list of raw images, or a record file, split into shards once.

Image paths become absolute while splitting (relative ones taken from the folder of the list or record
file), so every shard file and `OUT/data.jsonl` reads correctly wherever it is opened from.
Unusable input (bad JSON lines, lines that are not UTF-8 text, invalid records, missing image files) is
counted, never silently lost; more than `max_bad_fraction` of it stops the run. A record (or a listed image)
that repeats an earlier one exactly is kept once and counted as `duplicate_record`. An image given as --input,
or a record file given as --images, is a one-line error naming the right option.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from fgclip.data.schema import BadRecord, Record, iter_record_file, write_records
from fgclip.errors import UserError
from fgclip.pipeline.shards import INPUT_STAGE, ShardLayout

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(source: str | Path, exclude: str | Path | None = None) -> list[str]:
    """Absolute image paths: every image file under a folder (sorted; nothing under `exclude`, the output
    folder, so a re-run never reads its own plots), the lines of a list file, or one image file."""
    source = Path(source)
    if source.is_dir():
        skip = os.path.join(os.path.abspath(exclude), "") if exclude is not None else None
        found = (os.path.abspath(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return sorted(p for p in found if (skip is None or not p.startswith(skip)) and os.path.isfile(p))
    if source.is_file():
        if is_image_path(source):
            return [os.path.abspath(source)]
        if source.suffix.lower() in (".json", ".jsonl"):
            raise UserError(
                f"--images {source} is a record file; pass it as --input (--images takes a folder of "
                "images, one image, or a text file listing image paths)"
            )
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise UserError(
                f"--images {source} is neither an image nor a text list of image paths (not UTF-8 "
                f"text: {error.reason} at byte {error.start})"
            ) from error
        lines = [line.strip() for line in text.splitlines()]
        return [os.path.abspath(source.parent / line) for line in lines if line and not line.startswith("#")]
    raise UserError(f"--images {source}: no such folder or list file")


def _fingerprint(parts: list[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def read_image_records(
    source: str | Path, counts: Counter, exclude: str | Path | None = None
) -> tuple[list[Record], str]:
    paths = list_images(source, exclude)
    records, seen = [], set()
    for path in paths:
        if path in seen:  # a list file naming an image twice: one record
            counts["duplicate_record"] += 1
        elif os.path.isfile(path):
            records.append(Record(image=path))
        else:
            counts["missing_image"] += 1
        seen.add(path)
    counts["items"] += len(paths)
    return records, _fingerprint(paths)


def read_input_records(path: str | Path, counts: Counter) -> tuple[list[Record], str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--input {path}: no such file")
    if is_image_path(path):
        raise UserError(
            f"--input {path} is an image; --input takes a record file (.jsonl, or a .json list); "
            "pass images with --images (a folder, one image, or a list file)"
        )
    root = path.parent
    records, seen = [], set()
    for item in iter_record_file(path, require_captions=False):
        counts["items"] += 1
        if isinstance(item, BadRecord):
            counts["bad_record"] += 1
            continue
        item.image = os.path.abspath(item.resolve_image(root))
        key = json.dumps(item.to_json(), sort_keys=True)
        if key in seen:  # the same record again: kept once (a repeat would count twice in training)
            counts["duplicate_record"] += 1
            continue
        seen.add(key)
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
        raise UserError("give exactly one of --images DIR_OR_LIST and --input RECORDS")
    counts: Counter = Counter()
    if images is not None:
        records, fingerprint = read_image_records(images, counts, exclude=layout.out_dir)
        description = {"images": os.path.abspath(images)}
    else:
        records, fingerprint = read_input_records(input_file, counts)
        description = {"input": os.path.abspath(input_file)}
    existing = layout.read_manifest()
    if existing is not None:
        if existing["fingerprint"] != fingerprint or existing["shard_size"] != shard_size:
            raise UserError(
                f"{layout.out_dir} holds a run over other input or another --shard_size: "
                "use a new --output_dir, or --fresh to discard it"
            )
        return existing
    bad = counts["items"] - len(records) - counts["duplicate_record"]
    if counts["items"] and bad / counts["items"] > max_bad_fraction:
        raise UserError(
            f"{bad} of {counts['items']} input items are unusable ({dict(counts)}); "
            f"more than --max_bad_fraction {max_bad_fraction}"
        )
    if not records:
        raise UserError(f"no usable input: {dict(counts)}")
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
