"""Boxes in LMM answers: the LLaVA-1.5 pad-to-square convention, answer parsing and IoU.

LLaVA-1.5 (`image_aspect_ratio pad`) pastes the image centred on a square of side max(w, h) filled with
the image mean, then resizes; its referring-expression answers are `[x1, y1, x2, y2]` normalised to that
padded square. This module is the one place for that geometry: the runner pads images with
`expand_to_square`, and the localisation score maps boxes back with `box_from_square` before IoU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

Box = tuple[float, float, float, float]
# LLaVA's `image_aspect_ratio`: "pad" pastes the image on its padded square first (LLaVA-1.5), "resize" squashes it
ASPECT_MODES = ("pad", "resize")


def square_geometry(width: int, height: int) -> tuple[int, int, int]:
    """(side, x offset, y offset) of an image pasted onto its padded square, in pixels.

    Integer offsets as in LLaVA's expand2square, so boxes map back to exactly the pixels the model saw.
    """
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def expand_to_square(image: Image.Image, background: Sequence[int]) -> Image.Image:
    """The image centred on a square canvas of `background` colour (RGB ints); squares pass through."""
    width, height = image.size
    if width == height:
        return image
    side, dx, dy = square_geometry(width, height)
    canvas = Image.new(image.mode, (side, side), tuple(background))
    canvas.paste(image, (dx, dy))
    return canvas


def mean_background(image_mean: Sequence[float]) -> tuple[int, int, int]:
    """The pad colour LLaVA uses: the processor's normalisation mean as 0-255 ints."""
    return tuple(int(round(value * 255)) for value in image_mean[:3])


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def box_from_square(box: Sequence[float], width: int, height: int) -> Box:
    """A box normalised to the padded square -> normalised to the original image (clamped to [0, 1])."""
    side, dx, dy = square_geometry(width, height)
    x1, y1, x2, y2 = box
    return (
        _clamp((x1 * side - dx) / width),
        _clamp((y1 * side - dy) / height),
        _clamp((x2 * side - dx) / width),
        _clamp((y2 * side - dy) / height),
    )


def box_to_square(box: Sequence[float], width: int, height: int) -> Box:
    """A box normalised to the original image -> normalised to the padded square (the inverse)."""
    side, dx, dy = square_geometry(width, height)
    x1, y1, x2, y2 = box
    return ((x1 * width + dx) / side, (y1 * height + dy) / side, (x2 * width + dx) / side, (y2 * height + dy) / side)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes (0 for empty boxes)."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class ParsedBox:
    """A box read from an answer, normalised to the ORIGINAL image, and the scale it was written in."""

    box: Box
    scale: str  # "normalised", "percent", "pixel" or "per_mille"


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_BRACKETED = re.compile(r"[\[\(\{<]([^\[\]\(\)\{\}<>]*)[\]\)\}>]")
# "x1=0.1", "x_min: 12", "y2 = 3" labels would otherwise leak their digits into the numbers
_COORDINATE_LABEL = re.compile(r"\b(?:[xy]_?(?:1|2|min|max)|left|top|right|bottom|width|height)\s*[:=]", re.I)


def _four_numbers(text: str) -> list[float] | None:
    cleaned = _COORDINATE_LABEL.sub(" ", text)
    for group in _BRACKETED.findall(cleaned):
        numbers = re.findall(_NUMBER, group)
        if len(numbers) == 4:
            return [float(n) for n in numbers]
    numbers = re.findall(_NUMBER, cleaned)
    return [float(n) for n in numbers[:4]] if len(numbers) >= 4 else None


def parse_box(text: str, width: int, height: int, padded_square: bool = True) -> ParsedBox | None:
    """Read `[x1, y1, x2, y2]` from a model answer; None when no box can be read.

    Accepts extra words, any brackets or none, labelled coordinates and swapped corners. The scale is
    chosen from the values: all <= 1 -> normalised; <= 100 -> percent; inside the image's pixel size ->
    pixels of the original image; <= 1000 -> per mille. Normalised, percent and per-mille boxes are in
    the padded square's frame when `padded_square` (the LLaVA-1.5 convention) and are mapped back;
    pixel boxes are taken as pixels of the original image.
    """
    values = _four_numbers(text)
    if values is None:
        return None
    x1, y1, x2, y2 = (
        min(values[0], values[2]),
        min(values[1], values[3]),
        max(values[0], values[2]),
        max(values[1], values[3]),
    )
    largest = max(abs(v) for v in (x1, y1, x2, y2))
    if largest <= 1.0:
        scale, divisor = "normalised", 1.0
    elif largest <= 100.0:
        scale, divisor = "percent", 100.0
    elif x2 <= width + 1 and y2 <= height + 1:
        box = (_clamp(x1 / width), _clamp(y1 / height), _clamp(x2 / width), _clamp(y2 / height))
        return ParsedBox(box, "pixel")
    elif largest <= 1000.0:
        scale, divisor = "per_mille", 1000.0
    else:
        return None
    box = tuple(_clamp(v / divisor) for v in (x1, y1, x2, y2))
    if padded_square:
        box = box_from_square(box, width, height)
    return ParsedBox(box, scale)


def format_box(box: Sequence[float]) -> str:
    """A box the way LLaVA-1.5 writes it: `[0.12, 0.30, 0.55, 0.91]`."""
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"
