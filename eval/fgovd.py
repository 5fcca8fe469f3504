"""FG-OVD-style fine-grained region understanding: each box's region embedding against its positive
caption and N hard negatives; a region is correct when no negative scores above the positive.

    python -m eval.fgovd --model DIR --data 1_attributes.json [2_attributes.json ...] --images coco/ --output_dir DIR

Reads three layouts, as they are:
* the public FG-OVD benchmark files (lorebianchi98/FG-OVD `benchmarks/`: 1_attributes.json = hard,
  2_attributes = medium, 3_attributes = easy, shuffle_negatives = trivial, and the attribute files): one
  LVIS-style JSON document with `images` (int `id`, `width`, `height`, `file_name` such as
  "val2017/000000056288.jpg", relative to the COCO root given as --images), `annotations` (`image_id`,
  COCO pixel `bbox` [x, y, w, h], `category_id` = the positive caption, `neg_category_ids` = the negative
  captions) and `categories` (`id`, `name` = the caption text);
* the same benchmark as JSON lines, as FG-CLIP's evaluation reads it (`*_llava.jsonl`): `img_path`, pixel
  `bbox` [x, y, w, h], `pos_expression` (a string or a one-item list), `neg_expression` (a list), and
  optionally `width` / `height` (else read from the image);
* this project's records (data-format.md): `image` and `regions` with `bbox` and `hard_negatives`.
Regions are taken one by one: a bad box, a missing caption or an unknown category skips that region only
(counted by reason), never the rest of its record. A region repeating an earlier one of the same file
exactly (image, box, positive and negatives) is scored once and counted as a duplicate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.boxes import xywh_pixels_to_normalized
from eval.common.cli import owned_outputs, require_file, wrapped
from eval.common.command import EncoderRun
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.images import failure_reason, image_size_of
from eval.common.jsonfiles import iter_items, json_document, list_items
from eval.common.options import encoder_parser
from eval.common.reporting import bar_plot, markdown_table, model_label
from fgclip.cli import CommandParser, entry_point, non_negative_int, option, options_from
from fgclip.data.schema import RecordError, check_bbox, clean_negatives, region_from_json
from fgclip.errors import UserError

if TYPE_CHECKING:  # loaded in main, after the options are checked: --help needs neither
    import torch

    from eval.common.encoder import Encoder

# File names of the public FG-OVD benchmark and the difficulty each one is.
FGOVD_FILE_DIFFICULTY = {
    "1_attributes": "hard",
    "2_attributes": "medium",
    "3_attributes": "easy",
    "shuffle_negatives": "trivial",
}
DIFFICULTIES = ("hard", "medium", "easy", "trivial")
OWNED = owned_outputs({"fgovd"}, {"results.md", "fgovd_top1.png"})


@dataclass
class RegionQuery:
    """One box with its positive caption and negatives."""

    image: Path
    box: list[float]  # normalised [x1, y1, x2, y2]
    positive: str
    negatives: list[str]

    @property
    def key(self) -> tuple:
        return (self.image, tuple(self.box), self.positive, tuple(self.negatives))


@dataclass
class RegionFile:
    """The scorable regions of one data file and the count of everything that was not scorable.

    counts: `items` (lines or annotations read), `regions_in_file`, `duplicate_regions` and `skipped_<reason>`.
    """

    path: Path
    label: str
    queries: list[RegionQuery] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    _seen: set = field(default_factory=set, repr=False)

    def add(self, query: RegionQuery | None) -> None:
        """Count one region of the file; keep it unless it is None (skipped, already counted) or a duplicate."""
        self.counts["regions_in_file"] += 1
        if query is None:
            return
        if query.key in self._seen:
            self.counts["duplicate_regions"] += 1
            return
        self._seen.add(query.key)
        self.queries.append(query)

    @property
    def given(self) -> int:
        """Distinct regions of the file (duplicates are scored once)."""
        return self.counts["regions_in_file"] - self.counts["duplicate_regions"]


def difficulty_label(path: Path) -> str:
    """'hard' for `1_attributes*.json(l)` etc. (the public names), a difficulty word in the name, or the stem."""
    stem = Path(path).stem
    for prefix, difficulty in FGOVD_FILE_DIFFICULTY.items():
        if stem.startswith(prefix):
            return difficulty
    for difficulty in DIFFICULTIES:
        if difficulty in stem.lower():
            return difficulty
    return stem


def _query(image: Path, box, positive, negatives, counts: Counter) -> RegionQuery | None:
    """A region with its texts checked, or None with the reason counted."""
    if isinstance(positive, list):  # FG-CLIP's converted files wrap the positive in a one-item list
        positive = positive[0] if len(positive) == 1 else None
    if not isinstance(positive, str) or not positive.strip():
        counts["skipped_malformed"] += 1
        return None
    positive = positive.strip()
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        counts["skipped_malformed"] += 1
        return None
    dropped = Counter()
    negatives = clean_negatives(positive, negatives, dropped)
    counts.update({f"dropped_negatives_{reason}": count for reason, count in dropped.items()})
    if not negatives:
        counts["skipped_no_negatives"] += 1
        return None
    if box is None:
        counts["skipped_bad_box"] += 1
        return None
    return RegionQuery(image, box, positive, negatives)


def _fgovd_line_query(item: dict, images_root: Path, counts: Counter) -> RegionQuery | None:
    if not isinstance(item.get("img_path"), str) or not item["img_path"]:
        counts["skipped_malformed"] += 1
        return None
    image = images_root / item["img_path"]
    width, height = item.get("width"), item.get("height")
    if width is None or height is None:
        size = image_size_of(image)
        if size is None:
            counts["skipped_" + failure_reason(image)] += 1
            return None
        width, height = size
    box = xywh_pixels_to_normalized(item.get("bbox"), width, height)
    return _query(image, box, item.get("pos_expression"), item.get("neg_expression"), counts)


def _record_regions(item: dict, images_root: Path, loaded: RegionFile) -> None:
    """The regions of one record, each checked on its own."""
    counts = loaded.counts
    regions, image = item.get("regions"), item.get("image")
    if not isinstance(regions, list):
        counts["skipped_malformed"] += 1  # no list of regions: one item that gives nothing
        loaded.add(None)
        return
    for data in regions:
        if not isinstance(image, str) or not image.strip() or not isinstance(data, dict):
            counts["skipped_malformed"] += 1
            loaded.add(None)
            continue
        try:
            check_bbox(data.get("bbox"))
        except RecordError:
            counts["skipped_bad_box"] += 1
            loaded.add(None)
            continue
        try:
            region = region_from_json(data)
        except RecordError:
            counts["skipped_malformed"] += 1
            loaded.add(None)
            continue
        path = Path(image.strip())
        loaded.add(
            _query(
                path if path.is_absolute() else images_root / path,
                list(region.bbox),
                region.caption,
                region.hard_negatives,
                counts,
            )
        )


def _lvis_regions(path: Path, document: dict, images_root: Path, loaded: RegionFile, limit: int) -> None:
    """The regions of a public FG-OVD benchmark file (an LVIS-style document)."""
    counts = loaded.counts
    images = {image.get("id"): image for image in document["images"] if isinstance(image, dict)}
    captions = {c.get("id"): c.get("name") for c in document["categories"] if isinstance(c, dict)}
    for annotation in document["annotations"]:
        if limit and counts["items"] >= limit:
            counts["items_not_read_limit"] += 1
            continue
        counts["items"] += 1
        if not isinstance(annotation, dict):
            counts["skipped_malformed"] += 1
            loaded.add(None)
            continue
        image = images.get(annotation.get("image_id"))
        if image is None or not isinstance(image.get("file_name"), str):
            counts["skipped_unknown_image"] += 1
            loaded.add(None)
            continue
        negative_ids = annotation.get("neg_category_ids")
        wanted = [annotation.get("category_id"), *(negative_ids if isinstance(negative_ids, list) else [])]
        if not isinstance(negative_ids, list) or any(not isinstance(c, int) or c not in captions for c in wanted):
            counts["skipped_unknown_category"] += 1
            loaded.add(None)
            continue
        box = xywh_pixels_to_normalized(annotation.get("bbox"), image.get("width"), image.get("height"))
        loaded.add(
            _query(
                images_root / image["file_name"], box, captions[wanted[0]], [captions[c] for c in wanted[1:]], counts
            )
        )


def _is_lvis_document(document) -> bool:
    return isinstance(document, dict) and all(
        isinstance(document.get(k), list) for k in ("images", "annotations", "categories")
    )


def load_region_file(path: Path, images_root: Path, label: str, limit: int = 0) -> RegionFile:
    """Parse one FG-OVD file (either public layout) or record file; `limit` > 0 keeps the first `limit`
    items (lines, or annotations of a benchmark document)."""
    path = Path(path)
    loaded = RegionFile(path, label)
    counts = loaded.counts
    if path.suffix == ".json" and (document := json_document(path)) is not None:
        if _is_lvis_document(document):
            _lvis_regions(path, document, images_root, loaded, limit)
            items = iter(())
        else:
            items = list_items(path, document)
    else:
        items = iter_items(path)
    for item in items:
        if limit and counts["items"] >= limit:
            counts["items_not_read_limit"] += 1
            continue
        counts["items"] += 1
        if item.error is not None or not isinstance(item.value, dict):
            counts["skipped_malformed"] += 1
            loaded.add(None)
        elif "pos_expression" in item.value or "img_path" in item.value:
            loaded.add(_fgovd_line_query(item.value, images_root, counts))
        else:
            _record_regions(item.value, images_root, loaded)
    if counts["items"] == 0:
        raise UserError(f"{path} holds no items")
    return loaded


def score_regions(
    region_embeds: torch.Tensor, queries: list[RegionQuery], text_row: dict[str, int], text_embeds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(Q,)` hits and `(Q,)` ties by `fgclip.metrics.region_top1_hits`: a region is a hit when no negative
    scores above its positive (a tie is a hit, as in the public FG-OVD evaluation).

    region_embeds: `(Q, D)` one row per query; text_embeds: `(T, D)`, `text_row` maps a text to its row.
    """
    from fgclip.metrics import candidate_scores, region_ties, region_top1_hits

    columns = [[text_row[query.positive]] + [text_row[n] for n in query.negatives] for query in queries]
    scores = candidate_scores(region_embeds, text_embeds, columns)
    return region_top1_hits(scores), region_ties(scores)


def evaluate(encoder: Encoder, files: list[RegionFile]) -> dict[str, dict]:
    """Encode every distinct (image, box) once and every distinct text once; score each file."""
    import torch

    from fgclip.metrics import region_chance

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
            raise UserError(f"{region_file.path}: no region could be scored ({skipped})")
        hits, ties = score_regions(encoded.embeddings[[rows[i] for i in usable]], queries, text_row, text_embeds)
        negatives = [len(q.negatives) for q in queries]
        results[region_file.label] = {
            "top1": int(hits.sum()) / len(hits),
            "num_regions": len(hits),
            "correct": int(hits.sum()),
            "ties": int(ties.sum()),
            "mean_negatives": sum(negatives) / len(negatives),
            "chance": region_chance(negatives),
        }
    return results


@dataclass
class FgovdOptions:
    data: list[Path] = option(
        "one or more files: the public FG-OVD benchmark .json files, their JSON-lines form or record files (.jsonl or "
        "a .json list); several files are scored separately (e.g. the FG-OVD hard / medium / easy / trivial files) "
        "and together"
    )
    images: Path | None = option(
        "root folder for relative image paths, e.g. the COCO root holding val2017/ for the public FG-OVD files "
        "(default: the folder holding each data file)",
        None,
    )
    names: list[str] | None = option(
        "a label per data file (default: the FG-OVD difficulty read from the file name, e.g. 1_attributes -> hard, "
        "else the file name)",
        None,
    )
    limit: int = option(
        "read only the first N items (lines, or annotations of a benchmark file) of each file (0: "
        "all); results.json says how many were not read",
        0,
        type=non_negative_int,
    )


EPILOG = wrapped(
    "Ties: a negative scoring as high as the positive (within 1e-6) counts as a hit, as in the "
    "public FG-OVD evaluation of FG-CLIP (fgclip.metrics.region_top1_hits); results.json counts them "
    "(num_ties). Negatives are cleaned as the trainer cleans them (fgclip.data.schema.clean_negatives): those "
    "equal to the positive text, repeated or empty are dropped and counted. Regions without negatives, with "
    "an empty box, or "
    "whose image is missing are skipped one by one and counted in results.json (complete: false, counts by "
    "reason; --strict makes that exit 2); a region repeated exactly is scored once and counted."
)


def build_parser() -> CommandParser:
    return encoder_parser("python -m eval.fgovd", __doc__, FgovdOptions, epilog=EPILOG)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, run = options_from(args, FgovdOptions), EncoderRun.parsed(args)
    if options.names is not None and len(options.names) != len(options.data):
        raise UserError(f"--names has {len(options.names)} labels for {len(options.data)} data files")
    labels = options.names or [difficulty_label(path) for path in options.data]
    if len(set(labels)) != len(labels):
        raise UserError(f"two data files share the label {labels}; give distinct --names")
    for path in options.data:
        require_file(path, "--data")
    out = run.prepare_output([*options.data, options.images], OWNED)
    files = [
        load_region_file(path, options.images or path.parent, label, options.limit)
        for path, label in zip(options.data, labels)
    ]
    encoder = run.load_encoder()
    per_file = evaluate(encoder, files)

    counts = Counter()
    for region_file in files:
        counts.update(region_file.counts)
    scored = sum(result["num_regions"] for result in per_file.values())
    correct = sum(result["correct"] for result in per_file.values())
    counts["scored"] = scored
    cover = Coverage(
        "regions",
        sum(f.given for f in files),
        scored,
        skipped_reasons(counts),
        duplicates=counts["duplicate_regions"],
        truncated=encoder.truncated_texts(),
        not_read=counts["items_not_read_limit"],
        not_read_unit="items",
    )
    cover.warn()

    metrics = {"top1": correct / scored, "num_regions": scored, "num_ties": sum(r["ties"] for r in per_file.values())}
    for label, result in per_file.items():
        metrics[f"top1_{label}"] = result["top1"]
        metrics[f"num_regions_{label}"] = result["num_regions"]
    rows = [
        [label, r["num_regions"], files[i].given, round(r["mean_negatives"], 2), r["top1"], r["chance"], r["ties"]]
        for i, (label, r) in enumerate(per_file.items())
    ]
    if len(files) > 1:
        rows.append(["all", scored, sum(f.given for f in files), "", correct / scored, "", metrics["num_ties"]])
    table = markdown_table(
        ["set", "regions scored", "regions in file", "negatives / region", "top-1", "chance", "ties (hits)"], rows
    )
    bar_plot(
        out / "fgovd_top1.png",
        {label: r["top1"] for label, r in per_file.items()},
        f"FG-OVD top-1 ({model_label(run.model)})",
        "top-1 accuracy",
        chance=sum(r["chance"] * r["num_regions"] for r in per_file.values()) / scored,
    )
    return run.finish(
        "fgovd",
        metrics,
        cover,
        data=options.data,
        counts=dict(counts),
        table=table,
        headline=f"FG-OVD top-1 {metrics['top1']:.4f}",
        extra={
            "details": {
                "per_file": {
                    label: {**r, "file": str(f.path), "counts": dict(f.counts)}
                    for (label, r), f in zip(per_file.items(), files)
                }
            },
            "plots": ["fgovd_top1.png"],
        },
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
