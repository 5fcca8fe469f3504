"""The fine-grained record format (shared/spec/data-format.md section 1) as typed objects.

One place validates records, maps the official FineHARD items to them, and reads/writes JSONL, so the
trainer, the data pipeline and the evaluations agree on what a valid record is. Readers never crash on a
bad record: they yield `BadRecord` with a reason that the caller counts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Why a record could not be used: the keys of the trainer's bad-record counts (one per reason).
MALFORMED_JSON = "malformed_json"  # not JSON, or not UTF-8
INVALID_RECORD = "invalid_record"  # a field of the wrong type or shape
INVALID_BOX = "invalid_box"  # outside [0, 1], empty, not 4 numbers
MISSING_CAPTION = "missing_caption"  # a required caption or expression is empty
MISSING_IMAGE = "missing_image"  # the image file does not exist (e.g. under --images)
UNREADABLE_IMAGE = "unreadable_image"  # Pillow cannot decode it
INCOMPLETE_SAMPLE = "incomplete_sample"  # a shard sample without its record or its image
BAD_RECORD_KINDS = (
    MALFORMED_JSON,
    INVALID_RECORD,
    INVALID_BOX,
    MISSING_CAPTION,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    INCOMPLETE_SAMPLE,
)

# The official FineHARD loader strips this prefix from `f_path` before joining it to its image folder.
FINEHARD_PATH_PREFIX = "grit-20m/data-12m/"


class RecordError(ValueError):
    """A record that breaks the format; the message says which rule, `kind` which kind of rule."""

    def __init__(self, message: str, kind: str = INVALID_RECORD):
        super().__init__(message)
        self.kind = kind


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
    kind: str = INVALID_RECORD  # one of BAD_RECORD_KINDS


def check_bbox(bbox) -> list[float]:
    """The box as 4 floats, or `RecordError` if it is not a non-empty box inside [0, 1]."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) < 4:
        raise RecordError(f"bbox must be [x1, y1, x2, y2], got {bbox!r}", INVALID_BOX)
    try:
        x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    except (TypeError, ValueError) as error:
        raise RecordError(f"bbox values must be numbers, got {bbox!r}", INVALID_BOX) from error
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise RecordError(f"bbox has a non-finite value: {bbox!r}", INVALID_BOX)
    if min(x1, y1, x2, y2) < 0 or max(x1, y1, x2, y2) > 1:
        raise RecordError(f"bbox must be normalised to [0, 1], got {bbox!r}", INVALID_BOX)
    if not (x1 < x2 and y1 < y2):
        raise RecordError(f"bbox is empty (needs x1 < x2 and y1 < y2): {bbox!r}", INVALID_BOX)
    return [x1, y1, x2, y2]


def _text(value, name: str, required: bool) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(f"{name} is missing or empty", INVALID_RECORD if name == "image" else MISSING_CAPTION)
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a string, got {type(value).__name__}")
    return value.strip()


def clean_negatives(caption: str, negatives: Iterable[str], dropped: Counter | None = None) -> list[str]:
    """The usable hard negatives of a region caption, in order: each stripped, empty ones dropped, each text
    once (the first kept), and never the caption itself (a negative equal to the positive would be a second
    positive). The trainer, its held-out evaluation and `eval.fgovd` all clean negatives with this.

    dropped: when given, counts what was left out by reason (`empty`, `repeated`, `equal_to_positive`).
    """
    caption = caption.strip()
    kept: dict[str, None] = {}
    for negative in negatives:
        text = negative.strip()
        reason = (
            "empty" if not text else "equal_to_positive" if text == caption else "repeated" if text in kept else None
        )
        if reason is None:
            kept[text] = None
        elif dropped is not None:
            dropped[reason] += 1
    return list(kept)


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


def _finehard_negatives(box: dict) -> list[str]:
    """The hard negatives of a FineHARD box: the values of `short_expr_negs` in key order, used only where
    `flag_short_neg` is 1 (as the official loader does); a box without them has none."""
    if int(box.get("flag_short_neg", 0) or 0) != 1:
        return []
    negatives = box.get("short_expr_negs")
    if isinstance(negatives, dict):
        negatives = list(negatives.values())
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise RecordError(f"short_expr_negs must be a dict of strings, got {type(negatives).__name__}")
    return negatives


def finehard_image_path(f_path) -> str:
    """`f_path` as the official loader reads it: the `grit-20m/data-12m/` prefix removed (relative to the
    image folder)."""
    return f_path.replace(FINEHARD_PATH_PREFIX, "") if isinstance(f_path, str) else f_path


def record_from_finehard(item: dict) -> Record:
    """Map one item of the official FineHARD JSON lists to a `Record` (data-format.md's table).

    Boxes keep their first four values (the release sometimes adds a score); `f_path` loses the prefix the
    official loader strips. The official stage-2 text rules (the "a photo of " prefix, the first four boxes)
    are training choices and live in the trainer's dataset, not here.
    """
    if not isinstance(item, dict):
        raise RecordError(f"a FineHARD item must be an object, got {type(item).__name__}")
    boxes = item.get("bbox_info") or []
    if not isinstance(boxes, list):
        raise RecordError("bbox_info must be a list")
    regions = []
    for box in boxes:
        if not isinstance(box, dict):
            raise RecordError(f"a bbox_info entry must be an object, got {type(box).__name__}")
        bbox = box.get("bbox")
        regions.append(
            {
                "bbox": bbox[:4] if isinstance(bbox, (list, tuple)) else bbox,
                "caption": box.get("short_expr"),
                "long_caption": box.get("long_expr"),
                "hard_negatives": _finehard_negatives(box),
            }
        )
    return record_from_json(
        {
            "image": finehard_image_path(item.get("f_path")),
            "long_caption": item.get("caption"),
            "short_caption": item.get("short_caption"),
            "regions": regions,
        }
    )


def is_finehard_item(item) -> bool:
    return isinstance(item, dict) and "f_path" in item


def iter_record_file(path: str | Path, require_captions: bool = True) -> Iterator[Record | BadRecord]:
    """Records of a `.jsonl` file, or of a `.json` list (this format or FineHARD's), in file order.

    Malformed lines and invalid records come out as `BadRecord`; nothing is dropped silently.
    """
    path = Path(path)
    if path.suffix == ".json":
        try:
            items = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            yield BadRecord(str(path), f"not valid JSON: {error}", MALFORMED_JSON)
            return
        if not isinstance(items, list):
            yield BadRecord(str(path), "a .json record file must hold a list", INVALID_RECORD)
            return
        for index, item in enumerate(items):
            yield parse_item(item, f"{path}:{index}", require_captions)
        return
    with path.open("rb") as handle:  # bytes: a line that is not UTF-8 is one bad record, not the end of the file
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line.decode("utf-8"))
            except json.JSONDecodeError as error:
                yield BadRecord(f"{path}:{line_number}", f"not valid JSON: {error.msg}", MALFORMED_JSON)
                continue
            except UnicodeDecodeError as error:
                yield BadRecord(
                    f"{path}:{line_number}", f"not UTF-8 text: {error.reason} at byte {error.start}", MALFORMED_JSON
                )
                continue
            yield parse_item(item, f"{path}:{line_number}", require_captions)


def parse_item(item, source: str, require_captions: bool) -> Record | BadRecord:
    """One JSON item (this format or FineHARD's) as a `Record`, or a `BadRecord` saying why not."""
    try:
        if is_finehard_item(item):
            return record_from_finehard(item)
        return record_from_json(item, require_captions)
    except RecordError as error:
        return BadRecord(source, str(error), error.kind)


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
