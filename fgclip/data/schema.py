"""The fine-grained record format (shared/spec/data-format.md section 1) as typed objects.

One place validates records, maps the official FineHARD items to them, and reads/writes JSONL, so the
trainer, the data pipeline and the evaluations agree on what a valid record is. Readers never crash on a
bad record: they yield `BadRecord` with a reason that the caller counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class RecordError(ValueError):
    """A record that breaks the format; the message says which rule."""


@dataclass
class Region:
    """A box in an image with its referring expression(s) and optional hard negatives."""

    bbox: list[float]  # [x1, y1, x2, y2], normalised to [0, 1]
    caption: str
    long_caption: str | None = None
    hard_negatives: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = {"bbox": [float(v) for v in self.bbox], "caption": self.caption}
        if self.long_caption:
            data["long_caption"] = self.long_caption
        if self.hard_negatives:
            data["hard_negatives"] = list(self.hard_negatives)
        return data


@dataclass
class Record:
    """One image with its long and short captions and its regions."""

    image: str
    long_caption: str = ""
    short_caption: str = ""
    regions: list[Region] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # unknown fields, kept so a rewrite loses nothing

    def to_json(self) -> dict:
        data = dict(self.extra)
        data.update(image=self.image, long_caption=self.long_caption, short_caption=self.short_caption)
        data["regions"] = [region.to_json() for region in self.regions]
        return data

    def resolve_image(self, root: str | Path) -> Path:
        """The image path, relative paths taken from `root` (the folder holding the record file)."""
        path = Path(self.image)
        return path if path.is_absolute() else Path(root) / path


@dataclass
class BadRecord:
    """A record that could not be used, and why (for the skip accounting)."""

    source: str  # "file:line" or a shard/key
    reason: str


def check_bbox(bbox) -> list[float]:
    """The box as 4 floats, or `RecordError` if it is not a non-empty box inside [0, 1]."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) < 4:
        raise RecordError(f"bbox must be [x1, y1, x2, y2], got {bbox!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    except (TypeError, ValueError) as error:
        raise RecordError(f"bbox values must be numbers, got {bbox!r}") from error
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise RecordError(f"bbox has a non-finite value: {bbox!r}")
    if min(x1, y1, x2, y2) < 0 or max(x1, y1, x2, y2) > 1:
        raise RecordError(f"bbox must be normalised to [0, 1], got {bbox!r}")
    if not (x1 < x2 and y1 < y2):
        raise RecordError(f"bbox is empty (needs x1 < x2 and y1 < y2): {bbox!r}")
    return [x1, y1, x2, y2]


def _text(value, name: str, required: bool) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(f"{name} is missing or empty")
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a string, got {type(value).__name__}")
    return value.strip()


def region_from_json(data: dict) -> Region:
    if not isinstance(data, dict):
        raise RecordError(f"a region must be an object, got {type(data).__name__}")
    negatives = data.get("hard_negatives") or []
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise RecordError("hard_negatives must be a list of strings")
    return Region(
        bbox=check_bbox(data.get("bbox")),
        caption=_text(data.get("caption"), "region caption", required=True),
        long_caption=_text(data.get("long_caption"), "region long_caption", required=False) or None,
        hard_negatives=[n.strip() for n in negatives if n.strip()],
    )


_KNOWN_FIELDS = {"image", "long_caption", "short_caption", "regions"}


def record_from_json(data: dict, require_captions: bool = True) -> Record:
    """Validate one JSON object of the record format (captions required for training data)."""
    if not isinstance(data, dict):
        raise RecordError(f"a record must be a JSON object, got {type(data).__name__}")
    regions = data.get("regions") or []
    if not isinstance(regions, list):
        raise RecordError("regions must be a list")
    return Record(
        image=_text(data.get("image"), "image", required=True),
        long_caption=_text(data.get("long_caption"), "long_caption", required=require_captions),
        short_caption=_text(data.get("short_caption"), "short_caption", required=require_captions),
        regions=[region_from_json(region) for region in regions],
        extra={key: value for key, value in data.items() if key not in _KNOWN_FIELDS},
    )


def record_from_finehard(item: dict) -> Record:
    """Map one item of the official FineHARD JSON lists to a `Record` (data-format.md's table)."""
    if not isinstance(item, dict):
        raise RecordError(f"a FineHARD item must be an object, got {type(item).__name__}")
    regions = []
    for box in item.get("bbox_info") or []:
        negatives = []
        if int(box.get("flag_short_neg", 0) or 0) == 1 and isinstance(box.get("short_expr_negs"), dict):
            negatives = [str(value) for value in box["short_expr_negs"].values()]
        regions.append(
            {
                "bbox": (box.get("bbox") or [])[:4],
                "caption": box.get("short_expr"),
                "long_caption": box.get("long_expr"),
                "hard_negatives": negatives,
            }
        )
    return record_from_json(
        {
            "image": item.get("f_path"),
            "long_caption": item.get("caption"),
            "short_caption": item.get("short_caption"),
            "regions": regions,
        }
    )


def is_finehard_item(item) -> bool:
    return isinstance(item, dict) and "f_path" in item


def iter_record_file(
    path: str | Path, require_captions: bool = True
) -> Iterator[Record | BadRecord]:
    """Records of a `.jsonl` file, or of a `.json` list (this format or FineHARD's), in file order.

    Malformed lines and invalid records come out as `BadRecord`; nothing is dropped silently.
    """
    path = Path(path)
    if path.suffix == ".json":
        try:
            items = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            yield BadRecord(str(path), f"not valid JSON: {error}")
            return
        if not isinstance(items, list):
            yield BadRecord(str(path), "a .json record file must hold a list")
            return
        for index, item in enumerate(items):
            yield parse_item(item, f"{path}:{index}", require_captions)
        return
    with path.open("rb") as handle:  # bytes: a line of invalid UTF-8 is one bad record, as in the trainer
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                yield BadRecord(f"{path}:{line_number}", f"not valid JSON: {error.msg}")
                continue
            except UnicodeDecodeError:
                yield BadRecord(f"{path}:{line_number}", "not UTF-8 text")
                continue
            yield parse_item(item, f"{path}:{line_number}", require_captions)


def parse_item(item, source: str, require_captions: bool) -> Record | BadRecord:
    """One JSON item (this format or FineHARD's) as a `Record`, or a `BadRecord` saying why not."""
    try:
        if is_finehard_item(item):
            return record_from_finehard(item)
        return record_from_json(item, require_captions)
    except RecordError as error:
        return BadRecord(source, str(error))


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL (atomically: a temporary file renamed into place). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            count += 1
    temporary.replace(path)
    return count
