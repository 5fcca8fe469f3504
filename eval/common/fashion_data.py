"""Readers for the fashion retrieval files: FashionGen-style product items and FashionIQ-style triplets.

FashionGen-style JSON-lines (one image per line; a product may have several images):
    {"image": "images/123_0.jpg", "text": "slim-fit jeans in washed blue denim ...",
     "product_id": "123", "subcategory": "JEANS", "category": "PANTS"}
(`caption` is accepted for `text`; `subcategory` and `category` are optional.)

FashionIQ-style triplets, the public caption files as they are (a JSON list) or JSON-lines:
    {"candidate": "B00006M009", "target": "B00006M00B", "captions": ["is darker", "has long sleeves"],
     "category": "dress"}
The category comes from `category` or from a `cap.<category>.<split>.json` file name. Gallery files are the
public `split.<category>.<split>.json` lists of image names, or JSON-lines `{"image": ..., "category": ...}`.
A product line or a triplet repeated exactly is scored once and counted (`duplicate_items`, `duplicate_triplets`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from eval.common.jsonfiles import iter_items
from fgclip.errors import UserError

_CATEGORY_IN_NAME = re.compile(r"^(?:cap|split)\.([^.]+)\.")


@dataclass
class ProductItem:
    image: str
    text: str
    product: str
    subcategory: str


@dataclass
class Triplet:
    candidate: str
    target: str
    text: str  # the modification captions joined with " and "
    category: str


@dataclass
class Loaded:
    items: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def objects(self, path: Path, unit: str) -> Iterator[dict]:
        """The JSON objects of a file, each line or item counted under `unit`; one that is not valid JSON or
        not an object is counted as `skipped_malformed`."""
        for item in iter_items(path):
            self.counts[unit] += 1
            if item.error is None and isinstance(item.value, dict):
                yield item.value
            else:
                self.counts["skipped_malformed"] += 1


def category_from_name(path: Path) -> str | None:
    match = _CATEGORY_IN_NAME.match(Path(path).name)
    return match.group(1) if match else None


def load_products(path: Path) -> Loaded:
    loaded = Loaded()
    for value in loaded.objects(path, "items"):
        text = value.get("text", value.get("caption"))
        image, product = value.get("image"), value.get("product_id")
        if not isinstance(image, str) or not isinstance(text, str) or product is None or not str(product).strip():
            loaded.counts["skipped_malformed"] += 1
            continue
        if not text.strip():
            loaded.counts["skipped_empty_text"] += 1
            continue
        loaded.items.append(ProductItem(image, text.strip(), str(product), str(value.get("subcategory") or "")))
    if not loaded.items:
        raise UserError(
            f"{path} holds no usable product item ({dict(loaded.counts)}); each line needs image, text and product_id"
        )
    return loaded


def load_triplets(paths: list[Path]) -> Loaded:
    loaded = Loaded()
    seen: set[tuple] = set()
    for path in paths:
        file_category = category_from_name(path)
        for value in loaded.objects(path, "triplets"):
            captions = value.get("captions", value.get("caption"))
            captions = [captions] if isinstance(captions, str) else captions
            candidate, target = value.get("candidate"), value.get("target")
            category = value.get("category") or file_category or "all"
            if not isinstance(candidate, str) or not isinstance(target, str) or not isinstance(captions, list):
                loaded.counts["skipped_malformed"] += 1
                continue
            text = " and ".join(c.strip() for c in captions if isinstance(c, str) and c.strip())
            if not text:
                loaded.counts["skipped_empty_text"] += 1
                continue
            key = (candidate, target, text, str(category))
            if key in seen:  # the same triplet again: scored once
                loaded.counts["duplicate_triplets"] += 1
                continue
            seen.add(key)
            loaded.items.append(Triplet(*key))
    if not loaded.items:
        raise UserError(
            f"no usable triplet in {[str(p) for p in paths]} ({dict(loaded.counts)}); each needs "
            "candidate, target and captions"
        )
    return loaded


def load_gallery(paths: list[Path]) -> dict[str, list[str]]:
    """Category -> image names, from FashionIQ split lists or JSON-lines {"image", "category"}."""
    gallery: dict[str, list[str]] = {}
    for path in paths:
        file_category = category_from_name(path)
        for item in iter_items(path):
            value = item.value
            if isinstance(value, str):
                name, category = value, file_category or "all"
            elif isinstance(value, dict) and isinstance(value.get("image"), str):
                name, category = value["image"], str(value.get("category") or file_category or "all")
            else:
                raise UserError(f'{item.source}: a gallery entry must be an image name or {{"image", "category"}}')
            gallery.setdefault(category, []).append(name)
    return {category: list(dict.fromkeys(names)) for category, names in gallery.items()}
