"""Write FashionGen-style products of any supported layout as image files + JSON-lines items.

    python -m fgclip.fashion.export --data fashiongen_256_256_validation.h5 --out runs/fashiongen_val

`eval.fashion --task fashiongen` reads JSON-lines items with image files; the FashionGen release keeps its
images inside the HDF5 file (and FashionSAP's info_data.json points into it). This writes
`OUT/images/<product>_<n>.png` and `OUT/items.jsonl` (`image`, `text`, `product_id`, `subcategory`), so the
released test split is evaluated with the same protocols as everything else:

    python -m eval.fashion --task fashiongen --data runs/fashiongen_val/items.jsonl --model M --out runs/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

OWNED = ("images", "items.jsonl")


def export_products(paths: Sequence[str | Path], out: str | Path, images: str | Path | None = None,
                    progress: bool = True) -> dict:
    """Write the usable rows of `paths` under `out`; returns the counts (read and written)."""
    from tqdm import tqdm

    from fgclip.fashion.data import ImageError, load_image, read_products

    products = read_products(paths, images)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    counts = dict(products.counts)
    written, numbers = 0, {}
    with (out / "items.jsonl").open("w") as handle:
        for row in tqdm(products.rows, desc="exporting", unit="img", disable=not progress):
            numbers[row.product] = numbers.get(row.product, -1) + 1
            name = f"{row.product}_{numbers[row.product]}.png"
            try:
                load_image(row.image).save(out / "images" / name)
            except (ImageError, OSError):
                counts["skipped_unreadable_image"] = counts.get("skipped_unreadable_image", 0) + 1
                continue
            handle.write(json.dumps({"image": f"images/{name}", "text": row.text, "product_id": row.product,
                                     "subcategory": row.category}) + "\n")
            written += 1
    counts["written"] = written
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgclip.fashion.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, nargs="+", help="FashionGen .h5, FashionSAP info_data.json, "
                        "Fashion-FINE annotation .json or .jsonl items")
    parser.add_argument("--images", default=None, help="image root for files that name images (default: as the "
                        "reader finds it)")
    parser.add_argument("--out", required=True, help="output folder: images/ and items.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that holds other files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from fgclip.errors import UserError
    from fgclip.outputs import prepare_output_dir

    try:
        prepare_output_dir(args.out, inputs=[*args.data, args.images], owned=OWNED, overwrite=args.overwrite)
        counts = export_products(args.data, args.out, args.images, progress=not args.no_progress)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_") and v}
    print(f"wrote {counts['written']} images of {counts['rows']} rows to {args.out}/items.jsonl"
          + (f"; skipped {skipped}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
