"""Convert the public RefCOCO / RefCOCO+ / RefCOCOg annotations to the localisation JSONL.

    python -m eval.lmm.refer --refs refcoco/refs(unc).p --instances refcoco/instances.json --split testA \\
        --output_file refcoco_testA.jsonl

The release (the `refer` toolkit's refcoco.zip, refcoco+.zip, refcocog.zip) has a pickled list of refs
(`ref_id`, `ann_id`, `image_id`, `split`, `sentences` with `sent`) and a COCO-style `instances.json`
with the boxes (`[x, y, w, h]` pixels) and image sizes. Each sentence becomes one item (the usual
protocol): `{"id": "<ref_id>_<sent_id>", "image", "expression", "bbox" (normalised x1y1x2y2), "width",
"height"}`; images are COCO train2014 files. A `.json` refs list with the same fields is read too.
Unpickling runs code from the file: only convert files from the official release.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.common.boxes import xywh_pixels_to_normalized
from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError


def load_refs(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"refs file {path} does not exist")
    try:
        if path.suffix == ".json":
            refs = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as handle:
                refs = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as error:
        raise UserError(f"{path} is not a refs file: {error}") from error  # (JSON and UTF-8 errors are ValueErrors)
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise UserError(f"{path} must hold a list of refs")
    return refs


def convert(refs: list[dict], instances: dict, split: str) -> tuple[list[dict], int]:
    """(items of `split`, refs skipped because their box or image is not in the instances file)."""
    images = {image["id"]: image for image in instances.get("images", [])}
    boxes = {annotation["id"]: annotation["bbox"] for annotation in instances.get("annotations", [])}
    items, skipped = [], 0
    for ref in refs:
        if ref.get("split") != split:
            continue
        image = images.get(ref.get("image_id"))
        box = boxes.get(ref.get("ann_id"))
        if image is None or box is None or not image.get("width") or not image.get("height"):
            skipped += 1
            continue
        width, height = image["width"], image["height"]
        bbox = xywh_pixels_to_normalized(box, width, height)
        if bbox is None:
            skipped += 1
            continue
        for number, sentence in enumerate(ref.get("sentences", [])):
            text = sentence.get("sent") or sentence.get("raw")
            if not text:
                continue
            items.append(
                {
                    "id": f"{ref['ref_id']}_{sentence.get('sent_id', number)}",
                    "image": image["file_name"],
                    "expression": text.strip(),
                    "bbox": bbox,
                    "width": width,
                    "height": height,
                }
            )
    return items, skipped


@dataclass
class ReferOptions:
    refs: Path = option("refs(unc).p / refs(umd).p / refs(google).p (or a .json list)")
    instances: Path = option("the release's instances.json (boxes, image sizes)")
    split: str = option("split to export: val, test, testA, testB (RefCOCO/+), val/test (RefCOCOg umd)")
    output_file: Path = option("output JSONL (one item per sentence)", aliases=["out"])
    overwrite: bool = option("replace --output_file when the file exists", False)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m eval.lmm.refer", description=__doc__)
    parser.add_options(ReferOptions)
    return parser


def check_output_file(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """The output is a file: never a folder or an input, and an existing one only with --overwrite."""
    if output.is_dir():
        raise UserError(f"--output_file {output} is a folder; give the JSONL file to write")
    if any(output.resolve() == Path(source).resolve() for source in inputs):
        raise UserError(f"--output_file {output} is an input of this conversion; choose another file")
    if output.exists() and not overwrite:
        raise UserError(f"--output_file {output} exists; pass --overwrite to replace it")


def main(argv: Sequence[str] | None = None) -> None:
    options = options_from(build_parser().parse_args(argv), ReferOptions)
    output = options.output_file
    check_output_file(output, [options.refs, options.instances], options.overwrite)
    refs = load_refs(options.refs)
    if not options.instances.is_file():
        raise UserError(f"instances file {options.instances} does not exist")
    try:
        instances = json.loads(options.instances.read_bytes())
        items, skipped = convert(refs, instances, options.split)
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # incl. bad JSON and bad UTF-8
        raise UserError(f"cannot convert {options.refs} with {options.instances}: {error!r}") from error
    if not items:
        splits = sorted({str(ref.get("split")) for ref in refs})
        raise UserError(f"no items for split {options.split!r} (splits in the file: {splits})")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    print(
        f"wrote {len(items)} items to {output}"
        + (f" ({skipped} refs skipped: box or image not found)" if skipped else "")
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
