"""eval.zeroshot: ImageFolder trees, class-name files (incl. ImageNet-V2 numbered folders), end to end."""

from __future__ import annotations

import json

import pytest

from eval import zeroshot
from fgclip.errors import UserError
from tests.eval.conftest import COLOURS, common_args, make_image


def test_numbered_folders_take_names_by_index_not_by_text_order(tmp_path):
    folders = ["0", "1", "10", "2"]  # how ImageFolder sorts folders 0..10
    names = [f"class{i}" for i in range(11)]
    (tmp_path / "names.json").write_text(json.dumps(names))
    assert zeroshot.class_display_names(folders, tmp_path / "names.json") == ["class0", "class1", "class10", "class2"]
    assert zeroshot.class_display_names(["golden_retriever", "tabby"], None) == ["golden retriever", "tabby"]
    (tmp_path / "map.json").write_text(json.dumps({"n1": "goldfish"}))
    with pytest.raises(UserError, match="no name for class folder 'n2'"):
        zeroshot.class_display_names(["n1", "n2"], tmp_path / "map.json")
    (tmp_path / "one.txt").write_text("only\n")
    with pytest.raises(UserError, match="1 names for 2 class folders"):
        zeroshot.class_display_names(["a", "b"], tmp_path / "one.txt")


def test_command_end_to_end(tiny_model_dir, tmp_path):
    root = tmp_path / "val"
    for name, colour in COLOURS.items():
        for i in range(2):
            make_image(root / name / f"{i}.png", colour)
    (root / "purple").mkdir()  # an empty class stays a distractor
    (root / "red" / "broken.png").write_bytes(b"x")
    out = tmp_path / "out"
    result = zeroshot.main(
        ["--data", str(root), "--templates", "photo", "--max-per-class", "2", *common_args(tiny_model_dir, out)]
    )
    assert result["num_classes"] == 5 and result["num_images"] == 8
    assert result["counts"]["empty_classes"] == 1 and result["counts"]["images_not_read_limit"] == 1
    assert result["complete"] is True and "(--limit: 1 more images not read)" in result["note"]
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert set(result["details"]["per_class"]) == set(COLOURS)
    assert (out / "zeroshot.png").is_file()
    unlimited = zeroshot.main(
        ["--data", str(root), "--templates", "photo", *common_args(tiny_model_dir, tmp_path / "o2")]
    )
    assert unlimited["counts"]["skipped_unreadable_image"] == 1 and unlimited["complete"] is False


def test_imagenet_val_tree_as_sorted_into_wordnet_folders(tiny_model_dir, tmp_path):
    """ILSVRC2012 val after the usual re-sorting: val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG (upper-case suffix),
    class names one per line in the sorted order of the wnid folders (the order of the 1,000-name lists)."""
    root = tmp_path / "imagenet" / "val"
    for number, (wnid, colour) in enumerate([("n01440764", "red"), ("n01443537", "green"), ("n01484850", "blue")]):
        make_image(root / wnid / f"ILSVRC2012_val_{number + 293:08d}.JPEG", COLOURS[colour])
    (root / "n01440764" / "LOC_synset_mapping.txt").write_text("not an image\n")
    names = tmp_path / "imagenet_classes.txt"
    names.write_text("tench\ngoldfish\ngreat white shark\n")
    assert zeroshot.read_image_folder(root)[0] == ["n01440764", "n01443537", "n01484850"]
    result = zeroshot.main(
        [
            "--data",
            str(root),
            "--classnames",
            str(names),
            "--templates",
            "photo",
            *common_args(tiny_model_dir, tmp_path / "out"),
        ]
    )
    assert result["num_images"] == 3 and result["complete"] is True and result["note"] == "all 3 images scored"
    assert set(result["details"]["per_class"]) == {"tench", "goldfish", "great white shark"}
    # the built-in list finds each WordNet-id folder's name by id, here for a subset; by index for ImageNet-V2
    named = zeroshot.class_display_names(["n01484850", "n15075141"], "imagenet1k")
    assert named == ["great white shark", "toilet paper"]
    assert zeroshot.class_display_names(["0", "1", "10"], "imagenet1k") == ["tench", "goldfish", "brambling"]
    with pytest.raises(UserError, match="'n99999999' is not one of the 1,000 ImageNet WordNet ids"):
        zeroshot.class_display_names(["n01440764", "n99999999"], "imagenet1k")


def test_empty_trees_and_class_lists_are_errors(tiny_model_dir, tmp_path):
    args = common_args(tiny_model_dir, tmp_path / "out")
    (tmp_path / "none").mkdir()
    with pytest.raises(UserError, match="class list is empty|no class sub-folders"):
        zeroshot.main(["--data", str(tmp_path / "none"), *args])
    (tmp_path / "empty_classes" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images could be scored"):
        zeroshot.main(["--data", str(tmp_path / "empty_classes"), *args])
    make_image(tmp_path / "one" / "a" / "0.png")
    (tmp_path / "names.txt").write_text("\n")
    with pytest.raises(UserError, match="holds no class names"):
        zeroshot.main(["--data", str(tmp_path / "one"), "--classnames", str(tmp_path / "names.txt"), *args])
    with pytest.raises(UserError, match="is not a folder"):
        zeroshot.main(["--data", str(tmp_path / "absent"), *args])
