"""Bounding-box classification: each ground-truth box's region embedding against every class name
under a prompt ensemble (CLIP's 80 templates by default); top-1 and top-5 accuracy.

    python -m eval.box_cls --model DIR --data instances_val2017.json --images val2017/ --output_dir DIR

Annotations are COCO instances JSON read with pycocotools, as `instances_val2017.json` ships: `images` with
int `id`, `file_name` ("000000397133.jpg", relative to --images, e.g. val2017/), `width`, `height`;
`annotations` with `image_id`, pixel `bbox` [x, y, w, h], `category_id`, `iscrowd`; `categories` with
non-contiguous int ids (1..90) and `name` (LVIS files load the same way; underscores in their class
names become spaces). Crowd boxes and boxes smaller than --min_box_size pixels are skipped and counted,
as are annotations of images the file does not list; an annotation repeated (same id, or same image,
box and category) is scored once and counted.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.boxes import xywh_pixels_to_normalized
from eval.common.classification import ClassificationRun, ClassificationTask, classification_parser
from eval.common.cli import require_file
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.images import failure_reason, image_size_of
from eval.common.prompts import load_classnames
from fgclip.cli import CommandParser, entry_point, non_negative_int, option, options_from
from fgclip.errors import UserError

if TYPE_CHECKING:
    from pycocotools.coco import COCO

TASK = ClassificationTask("box_cls", "box classification", "boxes")


@dataclass
class BoxSet:
    """The boxes to classify, grouped by image, and the count of annotations left out and why."""

    classnames: list[str]
    paths: list[Path] = field(default_factory=list)
    boxes: list[list[list[float]]] = field(default_factory=list)  # per image, normalised boxes
    labels: list[list[int]] = field(default_factory=list)  # per image, class indices
    counts: Counter = field(default_factory=Counter)


def load_coco(path: Path) -> COCO:
    """pycocotools' index of an instances file; a malformed file is a one-line `UserError`."""
    from pycocotools.coco import COCO

    require_file(path, "--data")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            coco = COCO(str(path))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from error
    except AssertionError as error:
        raise UserError(
            f"{path} is not a COCO annotation file (a JSON object with images, annotations, categories): {error}"
        ) from error
    except (KeyError, TypeError) as error:
        raise UserError(f"{path} is a malformed COCO annotation file (missing field {error})") from error
    for part in ("images", "annotations", "categories"):
        if not coco.dataset.get(part):
            raise UserError(f"{path} has no {part}: nothing to classify")
    return coco


def category_names(coco: COCO, override: Path | None) -> tuple[list[int], list[str]]:
    """Category ids (sorted) and their display names (from the file, or from --classnames)."""
    category_ids = sorted(coco.cats)
    names = [str(coco.cats[c].get("name", "")).replace("_", " ").strip() for c in category_ids]
    if override is not None:
        given = load_classnames(override)
        if isinstance(given, dict):
            missing = [c for c in category_ids if str(c) not in given]
            if missing:
                raise UserError(f"--classnames {override} has no name for category id {missing[0]}")
            names = [given[str(c)] for c in category_ids]
        elif len(given) != len(category_ids):
            raise UserError(f"--classnames {override} has {len(given)} names for {len(category_ids)} categories")
        else:
            names = list(given)
    empty = [c for c, name in zip(category_ids, names) if not name]
    if empty:
        raise UserError(f"category {empty[0]} has no name (give --classnames)")
    return category_ids, names


def collect_boxes(
    coco: COCO,
    images_root: Path,
    classnames: list[str],
    category_ids: list[int],
    min_box_size: float,
    include_crowd: bool,
    max_images: int,
) -> BoxSet:
    box_set = BoxSet(classnames)
    counts = box_set.counts
    class_index = {category: index for index, category in enumerate(category_ids)}
    annotated = [i for i in sorted(coco.imgToAnns) if coco.imgToAnns[i]]
    image_ids = [i for i in annotated if i in coco.imgs]
    counts["annotations"] = sum(len(anns) for anns in coco.imgToAnns.values())
    counts["skipped_unknown_image"] = sum(len(coco.imgToAnns[i]) for i in annotated if i not in coco.imgs)
    counts["images_with_annotations"] = len(image_ids)
    if max_images:
        counts["images_not_read_limit"] = max(0, len(image_ids) - max_images)
        for image_id in image_ids[max_images:]:
            counts["annotations_not_read_limit"] += len(coco.imgToAnns[image_id])
        image_ids = image_ids[:max_images]
    seen: set = set()
    for image_id in image_ids:
        info = coco.imgs[image_id]
        path = images_root / str(info.get("file_name", ""))
        width, height = info.get("width"), info.get("height")
        annotations = coco.imgToAnns[image_id]
        if width is None or height is None:
            size = image_size_of(path)
            if size is None:
                counts["skipped_missing_image"] += len(annotations)
                continue
            width, height = size
        boxes, labels = [], []
        for annotation in annotations:
            key = (image_id, str(annotation.get("bbox")), annotation.get("category_id"))
            if annotation.get("id") in seen or key in seen:
                counts["duplicate_annotations"] += 1
                continue
            seen.update((annotation.get("id"), key) if annotation.get("id") is not None else (key,))
            if annotation.get("iscrowd", 0) and not include_crowd:
                counts["skipped_crowd"] += 1
                continue
            if annotation.get("category_id") not in class_index:
                counts["skipped_unknown_category"] += 1
                continue
            bbox = annotation.get("bbox")
            if isinstance(bbox, list) and len(bbox) >= 4 and min(bbox[2], bbox[3]) < min_box_size:
                counts["skipped_tiny"] += 1
                continue
            box = xywh_pixels_to_normalized(bbox, width, height)
            if box is None:
                counts["skipped_bad_box"] += 1
                continue
            boxes.append(box)
            labels.append(class_index[annotation["category_id"]])
        if boxes:
            box_set.paths.append(path)
            box_set.boxes.append(boxes)
            box_set.labels.append(labels)
    return box_set


@dataclass
class BoxClsOptions:
    data: Path = option("COCO-style instances JSON (e.g. instances_val2017.json or lvis_v1_val.json)")
    images: Path | None = option(
        "folder holding the images' file_name paths (default: the annotation file's folder)", None
    )
    classnames: Path | None = option(
        "override the categories' names: a JSON object {category id: name}, a JSON list or a text file with one "
        "name per line in ascending category-id order",
        None,
    )
    min_box_size: float = option("skip (and count) boxes whose width or height is below this many pixels", 1.0)
    include_crowd: bool = option("also classify iscrowd boxes (skipped by default)", False)
    max_images: int = option(
        "classify the boxes of the first N annotated images only (0: all); results.json says "
        "how many boxes were not read",
        0,
        type=non_negative_int,
    )


EPILOG = "Ties: a class scoring exactly as high as the true class ranks ahead of it (counted as a miss)."


def build_parser() -> CommandParser:
    return classification_parser("python -m eval.box_cls", __doc__, BoxClsOptions, epilog=EPILOG)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, run = options_from(args, BoxClsOptions), ClassificationRun.parsed(args)
    require_file(options.data, "--data")
    run.prepare_output([options.data, options.images], TASK.owned)
    coco = load_coco(options.data)
    category_ids, classnames = category_names(coco, options.classnames)
    box_set = collect_boxes(
        coco,
        options.images or options.data.parent,
        classnames,
        category_ids,
        options.min_box_size,
        options.include_crowd,
        options.max_images,
    )
    counts = box_set.counts
    encoder = run.load_encoder()
    import torch  # loaded with the encoder

    encoded = encoder.regions(box_set.paths, [torch.tensor(b, dtype=torch.float32) for b in box_set.boxes])
    labels = torch.tensor([label for image_labels in box_set.labels for label in image_labels], dtype=torch.long)
    offset = 0
    for path, boxes in zip(box_set.paths, box_set.boxes):
        if not encoded.ok[offset]:
            counts["skipped_" + failure_reason(path)] += len(boxes)
        offset += len(boxes)
    counts["scored"] = int(encoded.ok.sum())
    given = counts["annotations"] - counts["duplicate_annotations"] - counts["annotations_not_read_limit"]
    cover = Coverage(
        "boxes",
        given,
        counts["scored"],
        skipped_reasons(counts),
        duplicates=counts["duplicate_annotations"],
        not_read=counts["annotations_not_read_limit"],
        not_read_unit="boxes",
    )
    return run.classify_and_finish(TASK, encoded, labels, classnames, cover, data=options.data, counts=dict(counts))


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
