"""FG-OVD-style fine-grained region understanding: each box's region embedding against its positive
caption and N hard negatives; a region is correct when the positive scores strictly highest.

    python -m eval.fgovd --model DIR --data hard.jsonl [medium.jsonl ...] --out DIR

Reads two formats, line by line, as they are:
* the public FG-OVD benchmark files (hard / medium / easy / trivial): `img_path`, COCO pixel `bbox`
  `[x, y, w, h]`, `width`, `height`, `pos_expression`, `neg_expression` (2 to 10 negatives);
* this project's records (data-format.md): `image` and `regions` with `bbox` and `hard_negatives`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from eval.common.boxes import xywh_pixels_to_normalized
from eval.common.cli import (EvalError, add_cache_args, add_model_args, add_output_args, non_negative_int,
                             require_file, run_main, wrapped)
from eval.common.coverage import coverage, skipped_reasons
from eval.common.encoder import Encoder
from eval.common.images import failure_reason, image_size_of
from eval.common.jsonfiles import iter_items
from eval.common.metrics import rank_of_best_positive
from eval.common.reporting import bar_plot, markdown_table, model_label, write_results
from fgclip.data.schema import RecordError, record_from_json

# File names of the public FG-OVD benchmark and the difficulty each one is.
FGOVD_FILE_DIFFICULTY = {"1_attributes": "hard", "2_attributes": "medium", "3_attributes": "easy",
                         "shuffle_negatives": "trivial"}
DIFFICULTIES = ("hard", "medium", "easy", "trivial")


@dataclass
class RegionQuery:
    """One box with its positive caption and negatives."""

    image: Path
    box: list[float]  # normalised [x1, y1, x2, y2]
    positive: str
    negatives: list[str]


@dataclass
class RegionFile:
    """The scorable regions of one data file and the count of everything that was not scorable."""

    path: Path
    label: str
    queries: list[RegionQuery] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def difficulty_label(path: Path) -> str:
    """'hard' for `1_attributes*.jsonl` etc. (the public names), a difficulty word in the name, or the stem."""
    stem = Path(path).stem
    for prefix, difficulty in FGOVD_FILE_DIFFICULTY.items():
        if stem.startswith(prefix):
            return difficulty
    for difficulty in DIFFICULTIES:
        if difficulty in stem.lower():
            return difficulty
    return stem


def _clean_negatives(positive: str, negatives, counts: Counter) -> list[str] | None:
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        return None
    kept = [n.strip() for n in negatives if n.strip()]
    # A negative identical to the positive would make the region unanswerable under the tie rule.
    same = sum(1 for n in kept if n == positive)
    if same:
        counts["dropped_negatives_equal_to_positive"] += same
    return [n for n in kept if n != positive]


def _fgovd_query(item: dict, images_root: Path, counts: Counter) -> RegionQuery | None:
    positive = item.get("pos_expression")
    if isinstance(positive, list):  # FG-CLIP's converted files wrap the positive in a one-item list
        positive = positive[0] if positive else None
    if not isinstance(positive, str) or not positive.strip():
        counts["skipped_malformed"] += 1
        return None
    positive = positive.strip()
    negatives = _clean_negatives(positive, item.get("neg_expression"), counts)
    if negatives is None:
        counts["skipped_malformed"] += 1
        return None
    if not negatives:
        counts["skipped_no_negatives"] += 1
        return None
    image = images_root / str(item.get("img_path"))
    width, height = item.get("width"), item.get("height")
    if width is None or height is None:
        size = image_size_of(image)
        if size is None:
            counts["skipped_missing_image"] += 1
            return None
        width, height = size
    box = xywh_pixels_to_normalized(item.get("bbox"), width, height)
    if box is None:
        counts["skipped_bad_box"] += 1
        return None
    return RegionQuery(image, box, positive, negatives)


def _record_queries(item: dict, images_root: Path, counts: Counter) -> list[RegionQuery]:
    try:
        record = record_from_json(item, require_captions=False)
    except RecordError:
        counts["skipped_malformed"] += 1
        return []
    queries = []
    image = record.resolve_image(images_root)
    for region in record.regions:
        counts["regions_in_file"] += 1
        negatives = _clean_negatives(region.caption, region.hard_negatives, counts)
        if not negatives:
            counts["skipped_no_negatives"] += 1
            continue
        queries.append(RegionQuery(image, list(region.bbox), region.caption, negatives))
    return queries


def load_region_file(path: Path, images_root: Path, label: str, limit: int = 0) -> RegionFile:
    """Parse one FG-OVD or record file; `limit` > 0 keeps the first `limit` items (lines)."""
    loaded = RegionFile(Path(path), label)
    counts = loaded.counts
    for item in iter_items(path):
        if limit and counts["items"] >= limit:
            counts["items_not_read_limit"] += 1
            continue
        counts["items"] += 1
        if item.error is not None or not isinstance(item.value, dict):
            counts["skipped_malformed"] += 1
            counts["regions_in_file"] += 1
            continue
        if "pos_expression" in item.value or "img_path" in item.value:
            counts["regions_in_file"] += 1
            query = _fgovd_query(item.value, images_root, counts)
            loaded.queries.extend([query] if query else [])
        else:
            loaded.queries.extend(_record_queries(item.value, images_root, counts))
    if counts["items"] == 0:
        raise EvalError(f"{path} holds no items")
    return loaded


def score_regions(region_embeds: torch.Tensor, queries: list[RegionQuery], text_row: dict[str, int],
                  text_embeds: torch.Tensor) -> torch.Tensor:
    """`(Q,)` bool: the positive scores strictly above every negative (ties are misses).

    region_embeds: `(Q, D)` one row per query; text_embeds: `(T, D)`, `text_row` maps a text to its row.
    """
    width = 1 + max(len(q.negatives) for q in queries)
    columns = torch.full((len(queries), width), -1, dtype=torch.long)
    for row, query in enumerate(queries):
        ids = [text_row[query.positive]] + [text_row[n] for n in query.negatives]
        columns[row, : len(ids)] = torch.tensor(ids)
    scores = torch.einsum("qd,qkd->qk", region_embeds, text_embeds[columns.clamp(min=0)])
    scores = scores.masked_fill(columns < 0, float("-inf"))  # absent candidates never beat a positive
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[:, 0] = True
    return rank_of_best_positive(scores, positives) == 0


def evaluate(encoder: Encoder, files: list[RegionFile]) -> dict[str, dict]:
    """Encode every distinct (image, box) once and every distinct text once; score each file."""
    images: dict[Path, dict[tuple, int]] = {}
    for region_file in files:
        for query in region_file.queries:
            image_boxes = images.setdefault(query.image, {})
            image_boxes.setdefault(tuple(query.box), len(image_boxes))
    paths = list(images)
    boxes = [torch.tensor(list(image_boxes), dtype=torch.float32).reshape(-1, 4) for image_boxes in images.values()]
    encoded = encoder.regions(paths, boxes)
    offsets, offset = {}, 0
    for path, image_boxes in zip(paths, boxes):
        offsets[path] = offset
        offset += len(image_boxes)

    texts = list(dict.fromkeys(t for f in files for q in f.queries for t in [q.positive, *q.negatives]))
    text_embeds = encoder.texts(texts) if texts else torch.zeros(0, encoder.dim)
    text_row = {text: row for row, text in enumerate(texts)}

    results = {}
    for region_file in files:
        rows = [offsets[q.image] + images[q.image][tuple(q.box)] for q in region_file.queries]
        usable = [i for i, row in enumerate(rows) if encoded.ok[row]]
        for i in set(range(len(rows))) - set(usable):
            region_file.counts["skipped_" + failure_reason(region_file.queries[i].image)] += 1
        queries = [region_file.queries[i] for i in usable]
        if not queries:  # a file-level score of 0 would be a silent zero
            skipped = {k: v for k, v in region_file.counts.items() if k.startswith("skipped_") and v}
            raise EvalError(f"{region_file.path}: no region could be scored ({skipped})")
        hits = score_regions(encoded.embeddings[[rows[i] for i in usable]], queries, text_row, text_embeds)
        negatives = [len(q.negatives) for q in queries]
        results[region_file.label] = {
            "top1": int(hits.sum()) / len(hits),
            "num_regions": len(hits),
            "correct": int(hits.sum()),
            "mean_negatives": sum(negatives) / len(negatives),
            "chance": sum(1 / (1 + n) for n in negatives) / len(negatives),
        }
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.fgovd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=wrapped("Ties: a negative scoring exactly as high as the positive counts as a miss. Negatives identical "
        "to the positive text are dropped and counted. Regions without negatives, with an empty box, or whose "
        "image is missing are skipped and counted in results.json (which says when fewer regions were scored "
        "than the files hold)."),
    )
    add_model_args(parser)
    parser.add_argument(
        "--data", required=True, nargs="+", type=Path,
        help="one or more .jsonl (or .json list) files; several files are scored separately (e.g. the FG-OVD "
        "hard / medium / easy / trivial files) and together",
    )
    parser.add_argument(
        "--images", type=Path, default=None,
        help="root folder for relative image paths (default: the folder holding each data file)",
    )
    parser.add_argument(
        "--names", nargs="+", default=None,
        help="a label per data file (default: the FG-OVD difficulty read from the file name, e.g. "
        "1_attributes -> hard, else the file name)",
    )
    parser.add_argument("--limit", type=non_negative_int, default=0,
                        help="read only the first N items of each file (0: all); results.json says so")
    add_cache_args(parser)
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.time()
    if args.names is not None and len(args.names) != len(args.data):
        raise EvalError(f"--names has {len(args.names)} labels for {len(args.data)} data files")
    labels = args.names or [difficulty_label(path) for path in args.data]
    if len(set(labels)) != len(labels):
        raise EvalError(f"two data files share the label {labels}; give distinct --names")
    files = []
    for path, label in zip(args.data, labels):
        require_file(path, "--data")
        files.append(load_region_file(path, args.images or path.parent, label, args.limit))
    encoder = Encoder.from_args(args)
    per_file = evaluate(encoder, files)

    counts = Counter()
    for region_file in files:
        counts.update(region_file.counts)
    scored = sum(result["num_regions"] for result in per_file.values())
    correct = sum(result["correct"] for result in per_file.values())
    counts["scored"] = scored
    total = counts["regions_in_file"]
    skipped = skipped_reasons(counts)
    if counts["items_not_read_limit"]:
        skipped["not_read_limit"] = counts["items_not_read_limit"]
    cover = coverage(total, scored, skipped, "regions")

    metrics = {"top1": correct / scored, "num_regions": scored}
    for label, result in per_file.items():
        metrics[f"top1_{label}"] = result["top1"]
        metrics[f"num_regions_{label}"] = result["num_regions"]
    rows = [[label, r["num_regions"], files[i].counts["regions_in_file"], round(r["mean_negatives"], 2), r["top1"],
             r["chance"]] for i, (label, r) in enumerate(per_file.items())]
    if len(files) > 1:
        rows.append(["all", scored, total, "", correct / scored, ""])
    table = markdown_table(["set", "regions scored", "regions in file", "negatives / region", "top-1", "chance"], rows)
    args.out.mkdir(parents=True, exist_ok=True)
    bar_plot(args.out / "fgovd_top1.png", {label: r["top1"] for label, r in per_file.items()},
             f"FG-OVD top-1 ({model_label(args.model)})", "top-1 accuracy",
             chance=sum(r["chance"] * r["num_regions"] for r in per_file.values()) / scored)
    result = write_results(
        args.out, "fgovd", metrics, model=args.model, data=[str(p) for p in args.data], counts=dict(counts),
        started=started, table=table + f"\n{cover['note']}\n",
        extra={**cover, "encoder": encoder.describe(), "cache": encoder.cache.summary(),
               "details": {"per_file": {label: {**r, "file": str(f.path), "counts": dict(f.counts)}
                                        for (label, r), f in zip(per_file.items(), files)}},
               "plots": ["fgovd_top1.png"]},
    )
    print(f"FG-OVD top-1 {metrics['top1']:.4f} on {scored} regions -> {args.out / 'results.json'}")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
