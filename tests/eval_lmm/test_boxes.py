"""Box parsing on many answer formats, the pad-to-square round trip and IoU."""

import pytest
from PIL import Image

from fgclip.llava.boxes import (
    box_from_square,
    box_iou,
    box_to_square,
    expand_to_square,
    format_box,
    mean_background,
    parse_box,
    square_geometry,
)


def test_square_geometry_matches_expand2square_offsets():
    assert square_geometry(640, 480) == (640, 0, 80)
    assert square_geometry(480, 640) == (640, 80, 0)
    assert square_geometry(101, 50) == (101, 0, 25)  # integer offset, as LLaVA pastes
    assert square_geometry(64, 64) == (64, 0, 0)


def test_expand_to_square_pastes_centred_on_background():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    square = expand_to_square(image, (1, 2, 3))
    assert square.size == (40, 40)
    assert square.getpixel((0, 0)) == (1, 2, 3) and square.getpixel((0, 39)) == (1, 2, 3)
    assert square.getpixel((0, 10)) == (255, 0, 0) and square.getpixel((39, 29)) == (255, 0, 0)
    assert square.getpixel((0, 30)) == (1, 2, 3)
    same = Image.new("RGB", (8, 8))
    assert expand_to_square(same, (0, 0, 0)) is same


def test_mean_background_is_the_clip_mean_in_bytes():
    assert mean_background([0.48145466, 0.4578275, 0.40821073]) == (123, 117, 104)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (333, 500), (100, 100)])
def test_square_round_trip(size):
    box = (0.1, 0.2, 0.7, 0.9)
    back = box_from_square(box_to_square(box, *size), *size)
    assert back == pytest.approx(box)


def test_box_from_square_by_hand():
    # 640x480 pads 80 px above: the square's y 0.125..0.875 is the image's 0..1
    assert box_from_square((0.0, 0.125, 1.0, 0.875), 640, 480) == pytest.approx((0, 0, 1, 1))
    assert box_from_square((0.25, 0.5, 0.5, 0.625), 640, 480) == pytest.approx((0.25, 0.5, 0.5, (400 - 80) / 480))
    # a box in the padding is clamped to the image edge
    assert box_from_square((0.0, 0.0, 0.5, 0.1), 640, 480) == pytest.approx((0, 0, 0.5, 0))


SQUARE = dict(width=100, height=100)  # no padding: boxes come back unchanged


@pytest.mark.parametrize(
    "text, box, scale",
    [
        ("[0.12, 0.30, 0.55, 0.91]", (0.12, 0.30, 0.55, 0.91), "normalised"),
        ("The box is [0.12, 0.30, 0.55, 0.91].", (0.12, 0.30, 0.55, 0.91), "normalised"),
        ("(0.1, 0.2, 0.3, 0.4)", (0.1, 0.2, 0.3, 0.4), "normalised"),
        ("0.1 0.2 0.3 0.4", (0.1, 0.2, 0.3, 0.4), "normalised"),
        ("0.1,0.2,0.3,0.4", (0.1, 0.2, 0.3, 0.4), "normalised"),
        ("[[.1, .2, .3, .4]]", (0.1, 0.2, 0.3, 0.4), "normalised"),
        ("x1=0.1, y1=0.2, x2=0.3, y2=0.4", (0.1, 0.2, 0.3, 0.4), "normalised"),
        ("[0.5, 0.6, 0.1, 0.2]", (0.1, 0.2, 0.5, 0.6), "normalised"),  # swapped corners
        ("[12, 30, 55, 91]", (0.12, 0.30, 0.55, 0.91), "percent"),
        ("Region 2: [0.1, 0.2, 0.3, 0.4]", (0.1, 0.2, 0.3, 0.4), "normalised"),  # bracketed group wins
        ("[-0.02, 0.2, 1.0, 0.5]", (0.0, 0.2, 1.0, 0.5), "normalised"),  # clamped
    ],
)
def test_parse_box_formats(text, box, scale):
    parsed = parse_box(text, **SQUARE)
    assert parsed is not None and parsed.scale == scale
    assert parsed.box == pytest.approx(box)


def test_pixel_boxes_use_the_image_size_and_skip_unpadding():
    parsed = parse_box("[64, 120, 320, 480]", 640, 480)
    assert parsed.scale == "pixel"
    assert parsed.box == pytest.approx((0.1, 0.25, 0.5, 1.0))


def test_per_mille_when_values_exceed_the_image():
    parsed = parse_box("<box>(400,200),(700,400)</box>", 200, 300)
    assert parsed.scale == "per_mille"
    # per mille of the padded 300x300 square, then back to the 200x300 image (50 px padding on the left)
    assert parsed.box == pytest.approx(((120 - 50) / 200, 0.2, (210 - 50) / 200, 0.4))


def test_normalised_boxes_are_unpadded():
    parsed = parse_box("[0.25, 0.5, 0.5, 0.625]", 640, 480)
    assert parsed.box == pytest.approx((0.25, 0.5, 0.5, (400 - 80) / 480))
    unpadded = parse_box("[0.25, 0.5, 0.5, 0.625]", 640, 480, padded_square=False)
    assert unpadded.box == pytest.approx((0.25, 0.5, 0.5, 0.625))


@pytest.mark.parametrize("text", ["", "I cannot find it.", "[0.1, 0.2, 0.3]", "[5000, 1, 2, 3]", "none"])
def test_parse_failures(text):
    assert parse_box(text, 640, 480) is None


def test_iou():
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert box_iou((0, 0, 0.5, 1), (0.5, 0, 1, 1)) == 0.0
    assert box_iou((0, 0, 0.5, 0.5), (0, 0, 1, 1)) == pytest.approx(0.25)
    assert box_iou((0.2, 0.2, 0.2, 0.4), (0, 0, 1, 1)) == 0.0  # empty box


def test_format_box_two_decimals():
    assert format_box((0.123, 0.3, 0.55, 0.9051)) == "[0.12, 0.30, 0.55, 0.91]"
