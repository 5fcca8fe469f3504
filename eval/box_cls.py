"""Bounding-box classification: each ground-truth box's region embedding against every class name
under a prompt ensemble (CLIP's 80 templates by default); top-1 and top-5 accuracy.

    python -m eval.box_cls --model DIR --data instances_val2017.json --images val2017/ --out DIR

Annotations are COCO instances JSON read with pycocotools, as `instances_val2017.json` ships: `images` with
int `id`, `file_name` ("000000397133.jpg", relative to --images, e.g. val2017/), `width`, `height`;
`annotations` with `image_id`, pixel `bbox` [x, y, w, h], `category_id`, `iscrowd`; `categories` with
non-contiguous int ids (1..90) and `name` (LVIS files load the same way; underscores in their class
names become spaces). Crowd boxes and boxes smaller than --min-box-size pixels are skipped and counted,
as are annotations of images the file does not list; an annotation repeated (same id, or same image,
box and category) is scored once and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pycocotools.coco import COCO

from eval.common.boxes import xywh_pixels_to_normalized
from eval.common.cli import (EvalError, add_cache_args, add_model_args, add_output_args, non_negative_int,
                             owned_outputs, prepare_out, require_file, run_main, wrapped)
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.encoder import Encoder
from eval.common.images import failure_reason, image_size_of
from eval.common.metrics import classification_report
from eval.common.prompts import TEMPLATES_HELP, class_text_embeddings, load_classnames, load_templates
from eval.common.reporting import bar_plot, markdown_table, model_label, write_results

OWNED = owned_outputs({"box_cls"}, {"results.md", "box_cls.png"})


@dataclass
class BoxSet:
    """The boxes to classify, grouped by image, and the count of annotations left out and why."""

    classnames: list[str]
    paths: list[Path] = field(default_factory=list)
    boxes: list[list[list[float]]] = field(default_factory=list)  # per image, normalised boxes
    labels: list[list[int]] = field(default_factory=list)  # per image, class indices
    counts: Counter = field(default_factory=Counter)


def load_coco(path: Path) -> COCO:
    """pycocotools' index of an instances file; a malformed file is a one-line `EvalError`."""
    require_file(path, "--data")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            coco = COCO(str(path))
    except json.JSONDecodeError as error:
        raise EvalError(f"{path} is not valid JSON: {error}") from error
    except AssertionError as error:
        raise EvalError(f"{path} is not a COCO annotation file (a JSON object with images, annotations, "
                        f"categories): {error}") from error
    except (KeyError, TypeError) as error:
        raise EvalError(f"{path} is a malformed COCO annotation file (missing field {error})") from error
    for part in ("images", "annotations", "categories"):
        if not coco.dataset.get(part):
            raise EvalError(f"{path} has no {part}: nothing to classify")
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
                raise EvalError(f"--classnames {override} has no name for category id {missing[0]}")
            names = [given[str(c)] for c in category_ids]
        elif len(given) != len(category_ids):
            raise EvalError(f"--classnames {override} has {len(given)} names for {len(category_ids)} categories")
        else:
            names = list(given)
    empty = [c for c, name in zip(category_ids, names) if not name]
    if empty:
        raise EvalError(f"category {empty[0]} has no name (give --classnames)")
    return category_ids, names


def collect_boxes(coco: COCO, images_root: Path, classnames: list[str], category_ids: list[int],
                  min_box_size: float, include_crowd: bool, max_images: int) -> BoxSet:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.box_cls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=wrapped("Ties: a class scoring exactly as high as the true class ranks ahead of "
                                     "it (counted as a miss)."))
    add_model_args(parser)
    parser.add_argument("--data", required=True, type=Path, help="COCO-style instances JSON (e.g. instances_val2017.json "
                        "or lvis_v1_val.json)")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder holding the images' file_name paths (default: the annotation file's folder)")
    parser.add_argument("--templates", default="clip80", help=TEMPLATES_HELP + " (default clip80)")
    parser.add_argument("--classnames", type=Path, default=None,
                        help="override the categories' names: a JSON object {category id: name}, a JSON list or a "
                        "text file with one name per line in ascending category-id order")
    parser.add_argument("--min-box-size", type=float, default=1.0,
                        help="skip (and count) boxes whose width or height is below this many pixels (default 1)")
    parser.add_argument("--include-crowd", action="store_true", help="also classify iscrowd boxes (skipped by default)")
    parser.add_argument("--max-images", type=non_negative_int, default=0,
                        help="classify the boxes of the first N annotated images only (0: all); results.json says "
                        "how many boxes were not read")
    parser.add_argument("--per-class", action="store_true", help="add the per-class top-1 table to results.md "
                        "(results.json always has it)")
    add_cache_args(parser)
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.time()
    templates = load_templates(args.templates)
    require_file(args.data, "--data")
    out = prepare_out(args, [args.data, args.images, args.model], OWNED)
    coco = load_coco(args.data)
    category_ids, classnames = category_names(coco, args.classnames)
    box_set = collect_boxes(coco, args.images or args.data.parent, classnames, category_ids, args.min_box_size,
                            args.include_crowd, args.max_images)
    counts = box_set.counts
    encoder = Encoder.from_args(args)
    encoded = encoder.regions(box_set.paths, [torch.tensor(b, dtype=torch.float32) for b in box_set.boxes])
    labels = torch.tensor([label for image_labels in box_set.labels for label in image_labels], dtype=torch.long)
    offset = 0
    for path, boxes in zip(box_set.paths, box_set.boxes):
        if not encoded.ok[offset]:
            counts["skipped_" + failure_reason(path)] += len(boxes)
        offset += len(boxes)
    counts["scored"] = int(encoded.ok.sum())
    given = counts["annotations"] - counts["duplicate_annotations"] - counts["annotations_not_read_limit"]
    cover = Coverage("boxes", given, counts["scored"], skipped_reasons(counts),
                     duplicates=counts["duplicate_annotations"], not_read=counts["annotations_not_read_limit"],
                     not_read_unit="boxes")

    classifier = class_text_embeddings(encoder, classnames, templates)
    cover.truncated = encoder.truncated_texts()
    cover.warn()
    scores = encoded.embeddings[encoded.ok] @ classifier.T
    labels = labels[encoded.ok]
    metrics, per_class = classification_report(scores, labels, classnames)
    metrics.update(num_boxes=counts["scored"], num_classes=len(classnames))

    table = markdown_table(["boxes", "classes", "templates", "top-1", "top-5", "mean per-class top-1"],
                           [[metrics["num_boxes"], len(classnames), len(templates), metrics["top1"], metrics["top5"],
                             metrics["mean_class_top1"]]])
    if args.per_class:
        table += "\n" + markdown_table(["class", "boxes", "top-1"],
                                       [[name, v["count"], v["top1"]] for name, v in per_class.items()])
    bar_plot(out / "box_cls.png", {"top-1": metrics["top1"], "top-5": metrics["top5"],
                                   "mean per-class top-1": metrics["mean_class_top1"]},
             f"box classification ({model_label(args.model)})", "accuracy", chance=1 / len(classnames))
    result = write_results(
        out, "box_cls", metrics, model=args.model, data=str(args.data), counts=dict(counts), started=started,
        table=table + f"\n{cover.note}\n",
        extra={**cover.as_json(), "templates": args.templates, "num_templates": len(templates),
               "encoder": encoder.describe(), "cache": encoder.cache.summary(), "details": {"per_class": per_class},
               "plots": ["box_cls.png"]},
    )
    print(f"box classification top-1 {metrics['top1']:.4f} top-5 {metrics['top5']:.4f} on {cover.summary} "
          f"-> {out / 'results.json'}")
    cover.enforce(args.strict, out / "results.json")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
