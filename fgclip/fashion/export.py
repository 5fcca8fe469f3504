"""Write FashionGen-style products of any supported layout as image files + JSON-lines items.

    python -m fgclip.fashion.export --data fashiongen_256_256_validation.h5 --output_dir runs/fashiongen_val

`eval.fashion --task fashiongen` reads JSON-lines items with image files; the FashionGen release keeps its
images inside the HDF5 file (and FashionSAP's info_data.json points into it). This writes
`OUTPUT_DIR/images/<product>_<n>.png` and `OUTPUT_DIR/items.jsonl` (`image`, `text`, `product_id`,
`subcategory`), so the released test split is evaluated with the same protocols as everything else:

    python -m eval.fashion --task fashiongen --data runs/fashiongen_val/items.jsonl --model M --output_dir runs/eval
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from, output_dir_option

OWNED = ("images", "items.jsonl")


@dataclass
class ExportOptions:
    data: list[str] = option(
        "FashionGen .h5, FashionSAP info_data.json, Fashion-FINE annotation .json or .jsonl items", metavar="PATH"
    )
    output_dir: str = output_dir_option("output folder: images/ and items.jsonl")
    images: str | None = option(
        "image root for files that name images (default: as the reader finds it)", None, metavar="DIR"
    )
    overwrite: bool = option("write into a folder that holds other files", False)
    progress: bool = option("progress bar (--no_progress: none)", True)


def export_products(
    paths: Sequence[str | Path], out: str | Path, images: str | Path | None = None, progress: bool = True
) -> dict:
    """Write the usable rows of `paths` under `out`; returns the counts (read and written)."""
    from tqdm import tqdm

    from fgclip.data.readers import ImageError
    from fgclip.fashion.data import load_image, read_products

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
            handle.write(
                json.dumps(
                    {
                        "image": f"images/{name}",
                        "text": row.text,
                        "product_id": row.product,
                        "subcategory": row.category,
                    }
                )
                + "\n"
            )
            written += 1
    counts["written"] = written
    return counts


def build_parser() -> CommandParser:
    return CommandParser(prog="python -m fgclip.fashion.export", description=__doc__, options=[ExportOptions])


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv), ExportOptions)
    from fgclip.outputs import prepare_output_dir

    prepare_output_dir(
        options.output_dir, inputs=[*options.data, options.images], owned=OWNED, overwrite=options.overwrite
    )
    counts = export_products(options.data, options.output_dir, options.images, progress=options.progress)
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_") and v}
    print(
        f"wrote {counts['written']} images of {counts['rows']} rows to {options.output_dir}/items.jsonl"
        + (f"; skipped {skipped}" if skipped else "")
    )
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
