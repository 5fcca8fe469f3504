"""Readers for fashion retrieval data as the public releases ship it, with every skipped item counted.

FashionGen-style products (one row per image; a product has several images), any of:
* the FashionGen HDF5 files (`fashiongen_256_256_<split>.h5`): `input_image` (N, 256, 256, 3) uint8 and
  (N, 1) columns `input_productID`, `input_description`, `input_name`, `input_category`,
  `input_subcategory` (bytes, latin-1), read with h5py;
* FashionSAP's prepared `<root>/<split>/info_data.json` (a JSON list of those columns per row), whose
  images are the rows of `<root>/fashiongen_256_256_<split>.h5`;
* Fashion-FINE's annotation lists (`data_root/annotation/fashiongen_*.json`): `{"caption", "image": [names]}`
  per product, captions optionally prefixed with a category symbol (`coats_sign ...`), images under
  `data_root/images/`;
* JSON-lines `{"image", "text" (or "caption", or "title" + "description"), "product_id", "subcategory",
  "category"}` (what `eval.fashion` reads).
The category of a product is its subcategory, else its category; a row without either is skipped.

FashionIQ triplets: `captions/cap.<category>.<split>.json` (a JSON list of `{"candidate", "target",
"captions"}`) with images `images/<name>.<jpg|png|...>` and, for evaluation galleries,
`image_splits/split.<category>.<split>.json` (a JSON list of image names).

A path that does not exist or a file in none of these layouts raises `UserError` (one line, exit 2);
an item that cannot be used (missing image, no category, empty text, malformed) is skipped and counted by
reason, never dropped silently. Images that exist but cannot be decoded are found (and counted) while
training, by the dataset.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fgclip.data.readers import ImageError
from fgclip.data.schema import MISSING_IMAGE, UNREADABLE_IMAGE
from fgclip.errors import UserError
from fgclip.images import open_rgb, to_rgb
from fgclip.json_files import read_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
H5_SUFFIXES = (".h5", ".hdf5")
H5_TEXT_COLUMNS = ("input_productID", "input_description", "input_name", "input_category", "input_subcategory")
H5_ENCODING = "latin-1"  # FashionGen's strings are ISO-8859-1 bytes (as FashionSAP decodes them)
_CATEGORY_SIGN = re.compile(r"^\s*\[?([a-z]+)_sign\]?\s+")
_FASHIONIQ_NAME = re.compile(r"^(?:cap|split)\.([^.]+)\.([^.]+)\.json$")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


@dataclass(frozen=True)
class ImageRef:
    """An image file, or one row of a FashionGen HDF5 file."""

    path: Path | None = None
    h5_file: Path | None = None
    h5_row: int = -1

    @property
    def key(self) -> str:
        return f"{self.h5_file}#{self.h5_row}" if self.h5_file is not None else str(self.path)


_H5_HANDLES: dict[tuple[int, Path], object] = {}


def load_image(ref: ImageRef) -> Image.Image:
    """The RGB image of `ref`, or `ImageError`. HDF5 files stay open per process (and per worker)."""
    try:
        if ref.h5_file is None:
            return open_rgb(ref.path)
        key = (os.getpid(), ref.h5_file)
        if key not in _H5_HANDLES:
            import h5py

            _H5_HANDLES[key] = h5py.File(ref.h5_file, "r")
        return to_rgb(Image.fromarray(np.asarray(_H5_HANDLES[key]["input_image"][ref.h5_row], dtype=np.uint8)))
    except Exception as error:  # Pillow and h5py raise many types for bad data
        missing = not (ref.path if ref.h5_file is None else ref.h5_file).exists()
        raise ImageError(
            f"cannot read image {ref.key}: {type(error).__name__}: {error}",
            MISSING_IMAGE if missing else UNREADABLE_IMAGE,
        ) from error


def clean_text(text: str) -> str:
    """FashionGen descriptions carry HTML line breaks and entities: plain, single-spaced text."""
    return " ".join(html.unescape(_HTML_BREAK.sub(" ", text)).split())


# ---------------------------------------------------------------------------------------------- products
@dataclass
class ProductRow:
    """One image of a product and the product's text and category."""

    product: str
    text: str
    category: str
    image: ImageRef
    source: str  # "file:item", for messages


@dataclass
class Products:
    rows: list[ProductRow] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    formats: list[str] = field(default_factory=list)

    def by_product(self) -> dict[str, list[int]]:
        """Product id -> its rows, in first-seen order."""
        groups: dict[str, list[int]] = {}
        for index, row in enumerate(self.rows):
            groups.setdefault(row.product, []).append(index)
        return groups


def _require_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"data path not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is a folder; give a data file")
    return path


def _image_file(root: Path, name: str) -> Path | None:
    """`name` under `root` (absolute names kept); names without a suffix are tried with the usual ones."""
    path = Path(name) if Path(name).is_absolute() else root / name
    if path.is_file():
        return path
    if not path.suffix:
        for suffix in IMAGE_SUFFIXES:
            if path.with_name(path.name + suffix).is_file():
                return path.with_name(path.name + suffix)
    return None


def _default_image_root(path: Path, folder: str) -> Path:
    """Release layouts keep the data file in `root/<folder>/` and the images in `root/images/`."""
    if path.parent.name == folder and (path.parent.parent / "images").is_dir():
        return path.parent.parent / "images"
    return path.parent


def read_products(paths: Sequence[str | Path], images: str | Path | None = None) -> Products:
    """All product rows of `paths` (any supported layout, mixed); `images` overrides the image root."""
    products = Products()
    for path in paths:
        path = _require_file(Path(path))
        if path.suffix.lower() in H5_SUFFIXES:
            _read_h5(path, products)
        elif path.suffix == ".jsonl":
            _read_jsonl(path, Path(images) if images else path.parent, products)
        elif path.suffix == ".json":
            items = read_json(path)
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                raise UserError(
                    f"{path}: expected a JSON list of FashionGen items (FashionSAP info_data.json or "
                    "Fashion-FINE annotation)"
                )
            if "input_productID" in items[0]:
                _read_info_data(path, items, products)
            elif "caption" in items[0] and "image" in items[0]:
                root = Path(images) if images else _default_image_root(path, "annotation")
                _read_annotation(path, items, root, products)
            else:
                raise UserError(
                    f"{path}: items have neither input_productID (FashionSAP info_data.json) nor "
                    "caption + image (Fashion-FINE annotation)"
                )
        else:
            raise UserError(
                f"{path}: unsupported FashionGen file (use .h5, FashionSAP info_data.json, a "
                "Fashion-FINE annotation .json or .jsonl items)"
            )
    if not products.rows:
        raise UserError(
            f"no usable product image in {', '.join(str(p) for p in paths)} (skipped: {dict(products.counts)})"
        )
    return products


def _add_row(products: Products, product, text, category, image: ImageRef | None, source: str) -> None:
    products.counts["rows"] += 1
    if product is None or not str(product).strip():
        products.counts["skipped_no_product_id"] += 1
    elif not isinstance(text, str) or not clean_text(text):
        products.counts["skipped_empty_text"] += 1
    elif not category or not str(category).strip():
        products.counts["skipped_no_category"] += 1
    elif image is None:
        products.counts["skipped_missing_image"] += 1
    else:
        products.rows.append(ProductRow(str(product).strip(), clean_text(text), str(category).strip(), image, source))


def _open_h5(path: Path):
    try:
        import h5py
    except ImportError as error:
        raise UserError(f"{path}: reading FashionGen HDF5 files needs h5py (pip install h5py)") from error
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file: {error}") from error


def _h5_column(handle, name: str) -> list:
    values = np.asarray(handle[name]).reshape(len(handle[name]), -1)[:, 0]
    return [v.decode(H5_ENCODING) if isinstance(v, bytes) else v.item() for v in values]


def _read_h5(path: Path, products: Products) -> None:
    with _open_h5(path) as handle:
        missing = [name for name in ("input_image", *H5_TEXT_COLUMNS) if name not in handle]
        if missing:
            raise UserError(f"{path} is not a FashionGen HDF5 file (no {', '.join(missing)})")
        columns = {name: _h5_column(handle, name) for name in H5_TEXT_COLUMNS}
    products.formats.append("fashiongen-h5")
    for row in range(len(columns["input_productID"])):
        category = columns["input_subcategory"][row].strip() or columns["input_category"][row].strip()
        _add_row(
            products,
            columns["input_productID"][row],
            columns["input_description"][row],
            category,
            ImageRef(h5_file=path, h5_row=row),
            f"{path}:{row}",
        )


def _read_info_data(path: Path, items: list, products: Products) -> None:
    """FashionSAP's `root/<split>/info_data.json`: row i's image is row i of `root/fashiongen_256_256_<split>.h5`."""
    h5_file = path.parent.parent / f"fashiongen_256_256_{path.parent.name}.h5"
    if not h5_file.is_file():
        raise UserError(f"{path}: FashionSAP's info_data.json takes its images from {h5_file}, which is missing")
    with _open_h5(h5_file) as handle:
        rows_in_h5 = len(handle["input_image"]) if "input_image" in handle else -1
    if rows_in_h5 != len(items):
        raise UserError(f"{path} has {len(items)} rows but {h5_file} has {rows_in_h5} images")
    products.formats.append("fashionsap-info-data")
    for row, item in enumerate(items):
        if not isinstance(item, dict):
            products.counts["rows"] += 1
            products.counts["skipped_malformed"] += 1
            continue
        category = str(item.get("input_subcategory") or "").strip() or str(item.get("input_category") or "").strip()
        _add_row(
            products,
            item.get("input_productID"),
            item.get("input_description"),
            category,
            ImageRef(h5_file=h5_file, h5_row=row),
            f"{path}:{row}",
        )


def _read_annotation(path: Path, items: list, root: Path, products: Products) -> None:
    """Fashion-FINE's annotation lists; the product id is the image names' prefix (`86605_0.png` -> 86605)."""
    products.formats.append("fashion-fine-annotation")
    for index, item in enumerate(items):
        names = item.get("image") if isinstance(item, dict) else None
        caption = item.get("caption") if isinstance(item, dict) else None
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not isinstance(caption, str):
            products.counts["rows"] += 1
            products.counts["skipped_malformed"] += 1
            continue
        sign = _CATEGORY_SIGN.match(caption)
        category, text = (sign.group(1), caption[sign.end() :]) if sign else ("", caption)
        product = Path(str(names[0])).stem.rsplit("_", 1)[0]
        for name in names:
            found = _image_file(root, str(name))
            _add_row(products, product, text, category, ImageRef(path=found) if found else None, f"{path}:{index}")


def _read_jsonl(path: Path, root: Path, products: Products) -> None:
    products.formats.append("jsonl")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = None
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                products.counts["rows"] += 1
                products.counts["skipped_malformed"] += 1
                continue
            text = item.get("text", item.get("caption"))
            if text is None and (item.get("title") or item.get("description")):
                text = ". ".join(str(item[k]).strip() for k in ("title", "description") if item.get(k))
            category = item.get("subcategory") or item.get("category")
            found = _image_file(root, item["image"])
            _add_row(
                products,
                item.get("product_id"),
                text,
                category,
                ImageRef(path=found) if found else None,
                f"{path}:{number}",
            )


# ---------------------------------------------------------------------------------------------- FashionIQ
@dataclass
class Triplet:
    reference: ImageRef
    target: ImageRef
    text: str  # the modification captions joined with " and "
    category: str
    reference_name: str
    target_name: str
    source: str


@dataclass
class Triplets:
    items: list[Triplet] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    galleries: dict[str, dict[str, ImageRef]] = field(default_factory=dict)  # category -> name -> image
    gallery_source: str = "references and targets of the data"


def fashioniq_name_parts(path: Path) -> tuple[str, str] | None:
    """(category, split) of a `cap.<category>.<split>.json` / `split.<category>.<split>.json` file name."""
    match = _FASHIONIQ_NAME.match(Path(path).name)
    return (match.group(1), match.group(2)) if match else None


def read_triplets(paths: Sequence[str | Path], images: str | Path | None = None) -> Triplets:
    """FashionIQ caption files; galleries from the release's `image_splits` when present, else the data's images."""
    triplets = Triplets()
    split_files = []
    for path in paths:
        path = _require_file(Path(path))
        items = read_json(path) if path.suffix == ".json" else None
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a FashionIQ caption file (a JSON list, cap.<category>.<split>.json)")
        parts = fashioniq_name_parts(path)
        root = Path(images) if images else _default_image_root(path, "captions")
        if parts is not None:
            split_files.append((path.parent.parent / "image_splits" / f"split.{parts[0]}.{parts[1]}.json", root))
        for index, item in enumerate(items):
            _add_triplet(triplets, item, parts[0] if parts else None, root, f"{path}:{index}")
    if not triplets.items:
        raise UserError(f"no usable triplet in {', '.join(str(p) for p in paths)} (skipped: {dict(triplets.counts)})")
    _attach_galleries(triplets, split_files)
    return triplets


def _add_triplet(triplets: Triplets, item, file_category: str | None, root: Path, source: str) -> None:
    triplets.counts["triplets"] += 1
    if not isinstance(item, dict):
        triplets.counts["skipped_malformed"] += 1
        return
    captions = item.get("captions", item.get("caption"))
    captions = [captions] if isinstance(captions, str) else captions
    candidate, target = item.get("candidate"), item.get("target")
    category = item.get("category") or file_category
    if not isinstance(candidate, str) or not isinstance(target, str) or not isinstance(captions, list):
        triplets.counts["skipped_malformed"] += 1
        return
    if not category:
        triplets.counts["skipped_no_category"] += 1
        return
    text = " and ".join(clean_text(c) for c in captions if isinstance(c, str) and clean_text(c))
    if not text:
        triplets.counts["skipped_empty_text"] += 1
        return
    target_file = _image_file(root, target)
    if target_file is None:
        triplets.counts["skipped_missing_target_image"] += 1
        return
    reference_file = _image_file(root, candidate)
    if reference_file is None:
        triplets.counts["skipped_missing_reference_image"] += 1
        return
    triplets.items.append(
        Triplet(
            ImageRef(path=reference_file), ImageRef(path=target_file), text, str(category), candidate, target, source
        )
    )


def _attach_galleries(triplets: Triplets, split_files: list[tuple[Path, Path]]) -> None:
    by_category: dict[str, dict[str, ImageRef]] = {}
    for item in triplets.items:
        gallery = by_category.setdefault(item.category, {})
        gallery.setdefault(item.reference_name, item.reference)
        gallery.setdefault(item.target_name, item.target)
    found = [(path, root) for path, root in split_files if path.is_file()]
    if found and len(found) == len(split_files):
        triplets.gallery_source = "image_splits files"
        for path, root in found:
            names = read_json(path)
            if not isinstance(names, list):
                raise UserError(f"{path}: expected a JSON list of image names")
            category = fashioniq_name_parts(path)[0]
            gallery = by_category.setdefault(category, {})
            for name in names:
                image = _image_file(root, str(name))
                if image is None:
                    triplets.counts["gallery_missing_image"] += 1
                else:
                    gallery.setdefault(str(name), ImageRef(path=image))
    triplets.galleries = by_category
