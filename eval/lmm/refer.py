"""Convert the public RefCOCO / RefCOCO+ / RefCOCOg annotations to the localisation JSONL.

    python -m eval.lmm.refer --refs refcoco/refs(unc).p --instances refcoco/instances.json --split testA \\
        --out refcoco_testA.jsonl

The release (the `refer` toolkit's refcoco.zip, refcoco+.zip, refcocog.zip) has a pickled list of refs
(`ref_id`, `ann_id`, `image_id`, `split`, `sentences` with `sent`) and a COCO-style `instances.json`
with the boxes (`[x, y, w, h]` pixels) and image sizes. Each sentence becomes one item (the usual
protocol): `{"id": "<ref_id>_<sent_id>", "image", "expression", "bbox" (normalised x1y1x2y2), "width",
"height"}`; images are COCO train2014 files. A `.json` refs list with the same fields is read too.
Unpickling runs code from the file: only convert files from the official release.
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

from eval.common.boxes import xywh_pixels_to_normalized
from eval.lmm.errors import LMMEvalError, run_cli


def load_refs(path: Path) -> list[dict]:
    if not path.is_file():
        raise LMMEvalError(f"refs file {path} does not exist")
    try:
        if path.suffix == ".json":
            refs = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as handle:
                refs = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as error:
        raise LMMEvalError(f"{path} is not a refs file: {error}") from error  # (JSON and UTF-8 errors are ValueErrors)
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise LMMEvalError(f"{path} must hold a list of refs")
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
            items.append({"id": f"{ref['ref_id']}_{sentence.get('sent_id', number)}", "image": image["file_name"],
                          "expression": text.strip(), "bbox": bbox, "width": width, "height": height})
    return items, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.lmm.refer",
                                     description="Convert RefCOCO/+/g refs + instances to the localisation JSONL.")
    parser.add_argument("--refs", type=Path, required=True, help="refs(unc).p / refs(umd).p / refs(google).p (or a .json list)")
    parser.add_argument("--instances", type=Path, required=True, help="the release's instances.json (boxes, image sizes)")
    parser.add_argument("--split", required=True, help="split to export: val, test, testA, testB (RefCOCO/+), val/test (RefCOCOg umd)")
    parser.add_argument("--out", type=Path, required=True, help="output JSONL (one item per sentence)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when the file exists")
    return parser


def check_out_file(out: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """The output is a file: never a folder or an input, and an existing one only with --overwrite."""
    if out.is_dir():
        raise LMMEvalError(f"--out {out} is a folder; give the JSONL file to write")
    if any(out.resolve() == Path(source).resolve() for source in inputs):
        raise LMMEvalError(f"--out {out} is an input of this conversion; choose another file")
    if out.exists() and not overwrite:
        raise LMMEvalError(f"--out {out} exists; pass --overwrite to replace it")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    check_out_file(args.out, [args.refs, args.instances], args.overwrite)
    refs = load_refs(args.refs)
    if not args.instances.is_file():
        raise LMMEvalError(f"instances file {args.instances} does not exist")
    try:
        instances = json.loads(args.instances.read_bytes())
        items, skipped = convert(refs, instances, args.split)
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # incl. bad JSON and bad UTF-8
        raise LMMEvalError(f"cannot convert {args.refs} with {args.instances}: {error!r}") from error
    if not items:
        splits = sorted({str(ref.get("split")) for ref in refs})
        raise LMMEvalError(f"no items for split {args.split!r} (splits in the file: {splits})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    print(f"wrote {len(items)} items to {args.out}" + (f" ({skipped} refs skipped: box or image not found)" if skipped else ""))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
