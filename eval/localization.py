"""Referring-expression localisation of a LLaVA model (RefCOCO/+/g-style data): Acc@IoU>=0.5 and mean IoU.

    python -m eval.localization --data refcoco_testA.jsonl --images train2014/ --model LLAVA_DIR --output_dir runs/loc
    python -m eval.localization --data refcoco_testA.jsonl --images train2014/ --answers answers.jsonl \
        --output_dir runs/loc

Data: data-format.md section 4, one `{"id", "image", "expression", "bbox"}` per line, the box normalised to
the original image (`python -m eval.lmm.refer` converts the public RefCOCO annotations). The model is asked
LLaVA-1.5's question; its `[x1, y1, x2, y2]` answer is parsed (fgclip.llava.boxes.parse_box) and, when images
were padded to a square (the default, as LLaVA-1.5), mapped back from the square before IoU. An answer
without a readable box, or no answer, is a miss with IoU 0 and is counted; items without an answer or with
a malformed line make results.json say complete: false (--strict: exit 2). A line repeating an earlier
item (same image, expression and box) is scored once and counted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from eval.common.cli import owned_outputs, prepare_output
from eval.common.coverage import Coverage
from eval.common.options import OutputOptions
from eval.common.reporting import line_plot, markdown_table, write_scored_results
from eval.lmm.answers_file import question_key, read_answers_file
from eval.lmm.options import LMMModelOption, generation_parser, one_answer_source
from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.data.schema import RecordError, check_bbox
from fgclip.errors import UserError
from fgclip.llava.boxes import box_iou, parse_box
from fgclip.llava.settings import GenerationSettings

PROMPT = "Please provide the bounding box coordinate of the region this sentence describes: {expression}"
IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
OWNED = owned_outputs({"localization"}, {"results.md", "localization.png", "answers.jsonl", "predictions.jsonl"})


@dataclass
class Referral:
    """One referring expression and its ground-truth box (normalised to the original image)."""

    id: str
    image: str
    expression: str
    bbox: list[float]
    size: tuple[int, int] | None = None  # (width, height) when the data line gives it


def read_referrals(path: Path, counts: Counter) -> list[Referral]:
    """Items of a localisation JSONL; malformed lines (bad JSON or UTF-8, a field missing, an id used twice) are
    skipped and counted (`skipped_bad_lines`), a line repeating an item is counted in `duplicate_items`."""
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    items, seen, contents = [], set(), set()
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                try:
                    data = json.loads(line)
                except UnicodeDecodeError as error:
                    raise RecordError("not UTF-8 text") from error
                if not isinstance(data, dict):
                    raise RecordError("a line must be a JSON object")
                expression = data.get("expression")
                if not isinstance(expression, str) or not expression.strip():
                    raise RecordError("expression is missing or empty")
                if not isinstance(data.get("image"), str) or not data["image"]:
                    raise RecordError("image is missing")
                bbox = check_bbox(data.get("bbox"))
                content = (data["image"], expression.strip(), tuple(bbox))
                if content in contents:
                    counts["duplicate_items"] += 1
                    continue
                item_id = str(data.get("id", f"line{number}"))
                if item_id in seen:
                    raise RecordError(f"id {item_id} repeats")
            except (json.JSONDecodeError, RecordError) as error:
                counts["skipped_bad_lines"] += 1
                if counts["skipped_bad_lines"] <= 3:
                    print(f"warning: {path}:{number} skipped: {error}")
                continue
            seen.add(item_id)
            contents.add(content)
            size = (int(data["width"]), int(data["height"])) if data.get("width") and data.get("height") else None
            items.append(Referral(item_id, data["image"], expression.strip(), bbox, size))
    if not items:
        raise UserError(f"{path} holds no usable localisation items")
    return items


def image_path(root: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else root / name


def image_size(item: Referral, root: Path) -> tuple[int, int] | None:
    if item.size is not None:
        return item.size
    try:
        with Image.open(image_path(root, item.image)) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        return None


def score(
    items: list[Referral], answers: dict[str, str], root: Path, padded_square: bool, counts: Counter
) -> tuple[dict, list[dict]]:
    """Metrics and one prediction row per item; failures and missing answers count as IoU 0."""
    ious, rows = [], []
    for item in items:
        text = answers.get(question_key(item.id))
        size = image_size(item, root)
        parsed = None
        if text is None:
            counts["missing_answers"] += 1
        elif size is None:
            counts["missing_image_at_scoring"] += 1
        else:
            parsed = parse_box(text, size[0], size[1], padded_square)
            if parsed is None:
                counts["parse_failures"] += 1
            else:
                counts[f"scale_{parsed.scale}"] += 1
        iou = box_iou(parsed.box, item.bbox) if parsed else 0.0
        ious.append(iou)
        rows.append(
            {
                "id": item.id,
                "expression": item.expression,
                "answer": text,
                "bbox": item.bbox,
                "predicted": list(parsed.box) if parsed else None,
                "scale": parsed.scale if parsed else None,
                "iou": iou,
            }
        )
    total = len(items)
    acc_at = {f"{t:.1f}": sum(i >= t for i in ious) / total for t in IOU_THRESHOLDS}
    metrics = {
        "accuracy": acc_at["0.5"],
        "mean_iou": sum(ious) / total,
        "num_items": total,
        "num_parse_failures": counts["parse_failures"],
        "num_missing": counts["missing_answers"] + counts["missing_image_at_scoring"],
        "acc_at_iou": acc_at,
    }
    return metrics, rows


@dataclass
class LocalizationOptions:
    data: Path = option("JSONL: {id, image, expression, bbox [x1, y1, x2, y2] normalised to the image}")
    images: Path | None = option("root for relative image paths (default: the folder holding --data)", None)
    answers: Path | None = option("score this answers file (question_id = item id, text) instead", None)
    limit: int | None = option("only the first N items (smoke runs)", None, type=positive_int)


@dataclass
class LocalizationOutput(OutputOptions):
    output_dir: Path = option(
        "output folder: answers.jsonl (with --model; re-running resumes), predictions.jsonl "
        "(parsed box and IoU per item), results.json, results.md, localization.png",
        aliases=["out"],
    )


def build_parser() -> CommandParser:
    return generation_parser(
        "python -m eval.localization", __doc__, LocalizationOptions, (LocalizationOutput, "output"), max_new_tokens=48
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, output = options_from(args, LocalizationOptions), options_from(args, LocalizationOutput)
    model, settings = options_from(args, LMMModelOption).model, options_from(args, GenerationSettings)
    started = time.time()
    one_answer_source(options.answers, model)
    out = prepare_output(output, [options.data, options.answers, model, options.images], OWNED)
    counts: Counter = Counter(
        skipped_bad_lines=0, duplicate_items=0, missing_answers=0, parse_failures=0, missing_image_at_scoring=0
    )
    items = read_referrals(options.data, counts)
    if options.limit:
        counts["items_not_read_limit"] = max(0, len(items) - options.limit)
        items = items[: options.limit]
    root = options.images or options.data.parent
    generation = None
    if model is not None:
        from eval.lmm.generation import PromptItem, answer_all
        from fgclip.llava.generation import load_lmm

        lmm = load_lmm(model, settings)
        prompts = [
            PromptItem(item.id, image_path(root, item.image), PROMPT.format(expression=item.expression))
            for item in items
        ]
        summary = answer_all(lmm, prompts, out / "answers.jsonl", settings, description="localisation")
        summary.add_counts(counts)
        answers, generation = summary.answers, asdict(settings)
    else:
        contents = read_answers_file(options.answers)
        counts["bad_answer_lines"] = contents.bad_lines
        answers = contents.answers
    padded = settings.pad_to_square
    counts["items"] = len(items)
    metrics, rows = score(items, answers, root, padded, counts)
    cover = Coverage(
        "items",
        len(items) + counts["skipped_bad_lines"],
        len(items) - metrics["num_missing"],
        {
            "bad_lines": counts["skipped_bad_lines"],
            "no_answer_scored_as_wrong": counts["missing_answers"],
            "missing_image_scored_as_wrong": counts["missing_image_at_scoring"],
        },
        duplicates=counts["duplicate_items"],
        not_read=counts["items_not_read_limit"],
    )
    cover.warn()
    if metrics["num_parse_failures"]:
        print(f"warning: {metrics['num_parse_failures']} answers without a readable box are scored as misses")
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    table = markdown_table(
        ["Acc@0.5", "mean IoU", *[f"Acc@{t}" for t in metrics["acc_at_iou"]], "items", "parse failures", "missing"],
        [
            [
                metrics["accuracy"],
                metrics["mean_iou"],
                *metrics["acc_at_iou"].values(),
                metrics["num_items"],
                metrics["num_parse_failures"],
                metrics["num_missing"],
            ]
        ],
    )
    line_plot(
        out / "localization.png",
        {"accuracy": {float(t): v for t, v in metrics["acc_at_iou"].items()}},
        "Localisation accuracy by IoU threshold",
        "IoU threshold",
        "accuracy",
    )
    print(table)
    return write_scored_results(
        out,
        "localization",
        metrics,
        cover,
        model=model or options.answers,
        data=str(options.data),
        counts=dict(counts),
        started=started,
        table=table,
        headline=f"localisation Acc@0.5 {metrics['accuracy']:.4f}",
        strict=output.strict,
        extra={
            "details": {
                "generation": generation,
                "boxes_in_padded_square": padded,
                "failures_scored_as": "miss (IoU 0)",
            }
        },
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
