"""The synthetic product set: release layouts, families one or two attributes apart, held-out splits,
relative captions that describe the change, determinism, and the command's output-folder rule."""

import hashlib
import json

import pytest

from eval.common.fashion_data import load_products, load_triplets
from fgclip.cli import run
from fgclip.fashion.data import read_products, read_triplets
from fgclip.fashion.synthetic import (
    FASHIONIQ_CATEGORY,
    Garment,
    SyntheticSettings,
    difference_captions,
    generate,
    main,
    make_families,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_products")
    manifest = generate(out, SyntheticSettings(families=21, views=2, image_size=32, seed=3), progress=False)
    return out, manifest


def _changed(a: Garment, b: Garment) -> int:
    return sum(getattr(a, n) != getattr(b, n) for n in a.attributes())


def test_families_differ_in_one_or_two_attributes_and_titles_are_unique():
    import random

    families = make_families(SyntheticSettings(families=30), random.Random(0))
    titles = [g.title for family in families for g in family]
    assert len(titles) == len(set(titles))
    for family in families:
        base = family[0]
        assert all(1 <= _changed(base, sibling) <= 2 for sibling in family[1:])
        assert len({g.subcategory for g in family}) == 1
    assert (
        Garment("shirt", "red", "striped", "denim", "long sleeves", "v-neck").title
        == "a red striped denim shirt with long sleeves and a v-neck"
    )
    assert (
        Garment("dress", "black", "solid", "wool", "sleeveless", "round neck").title
        == "a sleeveless black wool dress with a round neck"
    )
    assert (
        Garment("pants", "blue", "checked", "cotton", detail="belt").title == "a blue checked cotton pants with a belt"
    )


def test_captions_describe_the_change():
    import random

    reference = Garment("shirt", "red", "solid", "cotton", "long sleeves", "v-neck")
    assert difference_captions(
        reference, Garment("shirt", "blue", "solid", "cotton", "long sleeves", "v-neck"), random.Random(0)
    ) == ["is blue", "is blue instead of red"]
    two = difference_captions(
        reference, Garment("shirt", "red", "dotted", "cotton", "sleeveless", "v-neck"), random.Random(0)
    )
    assert two[0] in ("is dotted", "has a dotted pattern") and two[1] in ("is sleeveless", "has no sleeves")


def test_the_release_layouts_and_held_out_splits(synthetic):
    out, manifest = synthetic
    assert sorted(p.name for p in out.iterdir()) == [
        "captions",
        "fashiongen",
        "image_splits",
        "images",
        "manifest.json",
    ]
    splits = {split: read_products([out / "fashiongen" / f"{split}.jsonl"]) for split in ("train", "val", "test")}
    for split, products in splits.items():
        assert not any(k.startswith("skipped") for k in products.counts)
        assert len(products.rows) == 2 * len(products.by_product()) == manifest["images"][split]
    products = {split: set(p.by_product()) for split, p in splits.items()}
    titles = {split: {r.text for r in p.rows} for split, p in splits.items()}
    assert not products["train"] & products["test"] and not products["val"] & products["test"]
    assert not titles["train"] & titles["test"]  # held-out products are unseen attribute combinations
    assert len({r.category for r in splits["train"].rows}) == 7
    # eval.fashion reads the same file
    assert len(load_products(out / "fashiongen" / "test.jsonl").items) == manifest["images"]["test"]
    categories = sorted(set(FASHIONIQ_CATEGORY.values()))
    triplets = read_triplets([out / "captions" / f"cap.{c}.train.json" for c in categories])
    assert triplets.gallery_source == "image_splits files" and not any(k.startswith("skipped") for k in triplets.counts)
    assert len(triplets.items) == sum(manifest["triplets"][f"{c}.train"] for c in categories)
    item = triplets.items[0]
    assert item.reference_name != item.target_name and item.target_name in triplets.galleries[item.category]
    assert len(load_triplets([out / "captions" / f"cap.{c}.test.json" for c in categories]).items) == sum(
        manifest["triplets"][f"{c}.test"] for c in categories
    )


def test_deterministic_by_seed(synthetic, tmp_path):
    out, _ = synthetic
    generate(tmp_path, SyntheticSettings(families=21, views=2, image_size=32, seed=3), progress=False)

    def digest(root):
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
        return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]

    assert digest(out) == digest(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["seed"] == 3


def test_the_command_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run(main, ["--out", str(tmp_path), "--families", "2"]) == 2  # --out: the old spelling of --output_dir
    assert "already holds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--output_dir", str(tmp_path / "new"), "--families", "0"])
    assert stop.value.code == 2 and "--families: must be a positive integer" in capsys.readouterr().err
