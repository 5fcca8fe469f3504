"""Readers on a few records written exactly in the public releases' layouts: the FashionGen HDF5 file,
FashionSAP's info_data.json, Fashion-FINE's annotation lists, JSON-lines, FashionIQ's captions and
image_splits; skipped items are counted by reason; wrong paths and formats are one-line errors."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from fgclip.errors import UserError
from fgclip.fashion.data import (
    ImageRef,
    clean_text,
    load_image,
    read_products,
    read_triplets,
)

# (product id, description, category, subcategory, pose): rows of one product are consecutive, as released
FASHIONGEN_ROWS = [
    (
        86605,
        "Denim-like jogg jacket in blue. Spread collar.<br><br>Tonal stitching.",
        "JACKETS & COATS",
        "DENIM JACKETS",
        "id_gridfs_1",
    ),
    (
        86605,
        "Denim-like jogg jacket in blue. Spread collar.<br><br>Tonal stitching.",
        "JACKETS & COATS",
        "DENIM JACKETS",
        "id_gridfs_2",
    ),
    (86773, "Layered tank top in gold lam\xe9. Approx. 56&quot; length.", "TOPS", "TANK TOPS", "id_gridfs_1"),
    (86877, "Sleeveless dress in black.", "", "", "id_gridfs_1"),  # no category: skipped
]


def _bytes_column(values, width=None):
    encoded = [v.encode("latin-1") for v in values]
    return np.array(encoded, dtype=f"S{width or max(len(e) for e in encoded) or 1}").reshape(-1, 1)


def write_fashiongen_h5(path: Path, rows=FASHIONGEN_ROWS) -> Path:
    """A FashionGen file: (N, 1) columns of latin-1 bytes, int product ids, (N, 256, 256, 3) uint8 images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    with h5py.File(path, "w") as handle:
        images = np.zeros((n, 256, 256, 3), dtype=np.uint8)
        for i in range(n):
            images[i] = ((40 * i) % 256, (255 - 40 * i) % 256, 128)
        handle["input_image"] = images
        handle["index"] = np.arange(n, dtype=np.int64).reshape(-1, 1)
        handle["index_2"] = np.arange(n, dtype=np.int64)
        handle["input_productID"] = np.array([r[0] for r in rows], dtype=np.int64).reshape(-1, 1)
        handle["input_description"] = _bytes_column([r[1] for r in rows], 600)
        handle["input_concat_description"] = _bytes_column([r[1] for r in rows], 600)
        handle["input_name"] = _bytes_column([r[1].split(".")[0] for r in rows])
        handle["input_category"] = _bytes_column([r[2] for r in rows])
        handle["input_subcategory"] = _bytes_column([r[3] for r in rows])
        handle["input_pose"] = _bytes_column([r[4] for r in rows])
        for name, value in (
            ("input_brand", "BRAND"),
            ("input_composition", "100% cotton"),
            ("input_department", "CLOTHING"),
            ("input_gender", "MEN"),
            ("input_season", "SS2017"),
        ):
            handle[name] = _bytes_column([value] * n)
        handle["input_msrpUSD"] = np.full((n, 1), 120.0)
    return path


def test_fashiongen_hdf5(tmp_path):
    h5 = write_fashiongen_h5(tmp_path / "fashiongen_256_256_train.h5")
    products = read_products([h5])
    assert products.formats == ["fashiongen-h5"]
    assert products.counts["rows"] == 4 and products.counts["skipped_no_category"] == 1
    assert [r.product for r in products.rows] == ["86605", "86605", "86773"]
    assert products.rows[0].text == "Denim-like jogg jacket in blue. Spread collar. Tonal stitching."
    assert products.rows[2].text == 'Layered tank top in gold lam\xe9. Approx. 56" length.'
    assert products.rows[0].category == "DENIM JACKETS"  # the subcategory: sample-100 draws negatives by it
    assert products.by_product() == {"86605": [0, 1], "86773": [2]}
    image = load_image(products.rows[2].image)
    assert image.size == (256, 256) and image.getpixel((5, 5)) == (80, 175, 128)


def test_fashionsap_info_data_takes_images_from_the_h5_rows(tmp_path):
    root = tmp_path / "data_root"
    write_fashiongen_h5(root / "fashiongen_256_256_train.h5")
    keys = ("input_productID", "input_description", "input_name", "input_category", "input_subcategory", "input_pose")
    items = [
        dict(zip(keys, (r[0], r[1], r[1].split(".")[0], r[2], r[3], r[4])), index=i, index_2=i)
        for i, r in enumerate(FASHIONGEN_ROWS)
    ]
    (root / "train").mkdir()
    (root / "train" / "info_data.json").write_text(json.dumps(items, indent=2))
    products = read_products([root / "train" / "info_data.json"])
    assert products.formats == ["fashionsap-info-data"] and len(products.rows) == 3
    assert products.rows[1].image == ImageRef(h5_file=root / "fashiongen_256_256_train.h5", h5_row=1)
    (root / "fashiongen_256_256_train.h5").unlink()
    with pytest.raises(UserError, match="fashiongen_256_256_train.h5, which is missing"):
        read_products([root / "train" / "info_data.json"])


def test_fashion_fine_annotation_with_category_signs(tmp_path):
    root = tmp_path / "data_root"
    for name in ("86605_0.png", "86605_1.png", "86773_0.png"):
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (256, 256), (200, 10, 10)).save(root / "images" / name)
    items = [
        {
            "caption": "coats_sign Denim-like jogg jacket in blue. Spread collar.",
            "image": ["86605_0.png", "86605_1.png", "86605_2.png"],
        },  # the third image was never downloaded
        {"caption": "tops_sign Layered tank top in gold lame.", "image": ["86773_0.png"]},
        {"caption": "Slim-fit jeans in light grey.", "image": ["86770_0.png"]},  # no category sign
    ]
    (root / "annotation").mkdir()
    (root / "annotation" / "fashiongen_val_symbol.json").write_text(json.dumps(items, indent=4))
    products = read_products([root / "annotation" / "fashiongen_val_symbol.json"])
    assert [(r.product, r.category) for r in products.rows] == [
        ("86605", "coats"),
        ("86605", "coats"),
        ("86773", "tops"),
    ]
    assert products.rows[0].text == "Denim-like jogg jacket in blue. Spread collar."
    assert products.counts["skipped_missing_image"] == 1 and products.counts["skipped_no_category"] == 1


def test_jsonl_items_and_counted_skips(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (40, 48), (0, 90, 0)).save(tmp_path / "img" / "a.jpg")
    lines = [
        {
            "image": "img/a.jpg",
            "title": "Green coat",
            "description": "Wool, two buttons",
            "product_id": 7,
            "subcategory": "COATS",
        },
        {"image": "img/a.jpg", "text": "Green coat", "product_id": 7, "category": "OUTERWEAR"},
        {"image": "img/gone.jpg", "text": "lost", "product_id": 8, "subcategory": "COATS"},
        {"image": "img/a.jpg", "text": "   ", "product_id": 9, "subcategory": "COATS"},
        {"text": "no image", "product_id": 10},
    ]
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines) + "{not json\n")
    products = read_products([data])
    assert [(r.text, r.category) for r in products.rows] == [
        ("Green coat. Wool, two buttons", "COATS"),
        ("Green coat", "OUTERWEAR"),
    ]
    assert dict(products.counts) == {
        "rows": 6,
        "skipped_missing_image": 1,
        "skipped_empty_text": 1,
        "skipped_malformed": 2,
    }


def test_wrong_paths_and_formats_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="data path not found"):
        read_products([tmp_path / "nope.h5"])
    (tmp_path / "dict.json").write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="expected a JSON list"):
        read_products([tmp_path / "dict.json"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="unsupported FashionGen file"):
        read_products([tmp_path / "notes.txt"])
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(UserError, match="not a FashionGen HDF5 file"):
        read_products([tmp_path / "other.h5"])
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        read_products([tmp_path / "broken.h5"])
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(json.dumps({"image": "x.jpg", "text": "t", "product_id": 1, "subcategory": "TOPS"}) + "\n")
    with pytest.raises(UserError, match=r"no usable product image .*missing_image"):
        read_products([only_bad])
    with pytest.raises(UserError, match="expected a FashionIQ caption file"):
        read_triplets([tmp_path / "dict.json"])


def write_fashioniq(root: Path) -> Path:
    """root/captions, root/image_splits and root/images as the FashionIQ release (images named by ASIN)."""
    (root / "images").mkdir(parents=True)
    for i, name in enumerate(("B0001", "B0002", "B0003", "B0004")):
        Image.new("RGB", (60, 80), (50 * i, 20, 20)).save(root / "images" / f"{name}.jpg")
    Image.new("RGB", (60, 80)).save(root / "images" / "B0005.png")
    (root / "captions").mkdir()
    (root / "captions" / "cap.dress.train.json").write_text(
        json.dumps(
            [
                {"target": "B0002", "candidate": "B0001", "captions": ["is shorter", "is red and sleeveless"]},
                {
                    "target": "B0009",
                    "candidate": "B0001",
                    "captions": ["is blue", "has a belt"],
                },  # target not downloaded
                {"target": "B0003", "candidate": "B0008", "captions": ["is blue", "has a belt"]},  # reference missing
                {"target": "B0004", "candidate": "B0003", "captions": []},
            ],
            indent=4,
        )
    )
    (root / "captions" / "cap.toptee.train.json").write_text(
        json.dumps([{"target": "B0005", "candidate": "B0004", "captions": ["has a graphic print", "is white"]}])
    )
    (root / "image_splits").mkdir()
    (root / "image_splits" / "split.dress.train.json").write_text(json.dumps(["B0001", "B0002", "B0003", "B0007"]))
    (root / "image_splits" / "split.toptee.train.json").write_text(json.dumps(["B0004", "B0005"]))
    return root


def test_fashioniq_captions_and_image_splits(tmp_path):
    root = write_fashioniq(tmp_path / "fashioniq")
    triplets = read_triplets([root / "captions" / "cap.dress.train.json", root / "captions" / "cap.toptee.train.json"])
    assert [(t.reference_name, t.target_name, t.category, t.text) for t in triplets.items] == [
        ("B0001", "B0002", "dress", "is shorter and is red and sleeveless"),
        ("B0004", "B0005", "toptee", "has a graphic print and is white"),
    ]
    assert triplets.items[1].target.path == root / "images" / "B0005.png"  # names carry no suffix
    assert dict(triplets.counts) == {
        "triplets": 5,
        "skipped_missing_target_image": 1,
        "skipped_missing_reference_image": 1,
        "skipped_empty_text": 1,
        "gallery_missing_image": 1,
    }
    assert triplets.gallery_source == "image_splits files"
    assert sorted(triplets.galleries["dress"]) == ["B0001", "B0002", "B0003"]  # B0007 is not in images/
    alone = read_triplets([root / "captions" / "cap.dress.train.json"])
    assert set(alone.galleries) == {"dress"}


def test_clean_text():
    assert (
        clean_text("Tonal stitching.<br><br>Part of the  collaboration.<BR/>")
        == "Tonal stitching. Part of the collaboration."
    )


def test_export_makes_hdf5_products_readable_by_eval_fashion(tmp_path, capsys):
    from eval.common.fashion_data import load_products
    from fgclip.cli import run
    from fgclip.fashion.export import main

    h5 = write_fashiongen_h5(tmp_path / "fashiongen_256_256_validation.h5")
    assert main(["--data", str(h5), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "wrote 3 images of 4 rows" in capsys.readouterr().out
    loaded = load_products(tmp_path / "out" / "items.jsonl")
    assert [(i.product, i.subcategory) for i in loaded.items] == [("86605", "DENIM JACKETS")] * 2 + [
        ("86773", "TANK TOPS")
    ]
    assert Image.open(tmp_path / "out" / loaded.items[2].image).getpixel((0, 0)) == (80, 175, 128)
    assert run(main, ["--data", str(h5), "--output_dir", str(h5)]) == 2  # the input itself
