"""Box conversion for evaluation files: COCO-style pixel `[x, y, w, h]` -> normalised `[x1, y1, x2, y2]`."""

from __future__ import annotations

import math


def xywh_pixels_to_normalized(bbox, width: float, height: float) -> list[float] | None:
    """Normalise a pixel `[x, y, w, h]` box by the image size and clip it to the image.

    Returns None for a box that is malformed, non-finite, or empty after clipping (the caller counts it).
    COCO boxes may reach a fraction of a pixel past the border, hence clipping rather than rejecting.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) < 4:
        return None
    try:
        x, y, w, h = (float(v) for v in bbox[:4])
        width, height = float(width), float(height)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h, width, height)) or width <= 0 or height <= 0:
        return None
    x1, y1 = max(0.0, x / width), max(0.0, y / height)
    x2, y2 = min(1.0, (x + w) / width), min(1.0, (y + h) / height)
    if not (x1 < x2 and y1 < y2):
        return None
    return [x1, y1, x2, y2]
