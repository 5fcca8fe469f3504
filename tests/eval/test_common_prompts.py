"""Prompt templates, class-name files and box conversion."""

from __future__ import annotations

import json

import pytest

from eval.common.boxes import xywh_pixels_to_normalized
from eval.common.prompts import CLIP_IMAGENET_TEMPLATES, fill_template, load_classnames, load_templates
from fgclip.errors import UserError


def test_the_80_clip_templates():
    assert len(CLIP_IMAGENET_TEMPLATES) == 80 == len(set(CLIP_IMAGENET_TEMPLATES))
    assert all(t.count("{}") == 1 for t in CLIP_IMAGENET_TEMPLATES)
    assert fill_template("a photo of a {}.", "curly {brace}") == "a photo of a curly {brace}."


def test_template_files(tmp_path):
    assert load_templates("photo") == ("a photo of a {}.",)
    good = tmp_path / "t.txt"
    good.write_text("a {} here\n\nthe {}\n")
    assert load_templates(str(good)) == ("a {} here", "the {}")
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder\n")
    with pytest.raises(UserError, match="needs a"):
        load_templates(str(bad))
    with pytest.raises(UserError, match="neither"):
        load_templates(str(tmp_path / "absent.txt"))


def test_classname_files(tmp_path):
    (tmp_path / "a.txt").write_text("cat\n dog \n")
    assert load_classnames(tmp_path / "a.txt") == ["cat", "dog"]
    (tmp_path / "b.json").write_text(json.dumps({"n01": "goldfish"}))
    assert load_classnames(tmp_path / "b.json") == {"n01": "goldfish"}
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="no class names"):
        load_classnames(tmp_path / "empty.txt")
    (tmp_path / "bad.json").write_text("[1,")
    with pytest.raises(UserError, match="not valid JSON"):
        load_classnames(tmp_path / "bad.json")


def test_xywh_boxes_are_normalised_and_clipped():
    assert xywh_pixels_to_normalized([10, 20, 30, 40], 100, 200) == [0.1, 0.1, 0.4, 0.3]
    assert xywh_pixels_to_normalized([90, 0, 20, 10], 100, 100) == [0.9, 0.0, 1.0, 0.1]  # clipped at the border
    assert xywh_pixels_to_normalized([10, 10, 0, 5], 100, 100) is None  # empty
    assert xywh_pixels_to_normalized([120, 10, 5, 5], 100, 100) is None  # outside the image
    assert xywh_pixels_to_normalized("junk", 100, 100) is None
    assert xywh_pixels_to_normalized([1, 1, 2, 2], 0, 100) is None
