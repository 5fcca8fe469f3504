"""Reading images as 8-bit RGB without losing what high-bit-depth files hold.

Pillow's `convert("RGB")` clips 16-bit and 32-bit greyscale values to 255, so a 16-bit PNG becomes almost
white. Every place that reads an image (training, every evaluation, the LMM code, the data engine) goes
through `to_rgb` / `open_rgb`, which scale such modes to 8 bits instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Integer greyscale modes and the largest value their samples can hold. Pillow opens 16-bit greyscale
# PNG/TIFF as "I;16*"; "I" (32-bit signed) is what older Pillow and some TIFF writers give for 16-bit data,
# so it is read on the 16-bit scale too (values above 65535 saturate).
_INTEGER_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as an 8-bit RGB image; high-bit-depth greyscale is scaled, not clipped.

    Float images ("F") are read as [0, 1] when their largest value is at most 1, else as [0, 255].
    Every other mode (RGB, palette, L, LA, RGBA, CMYK, YCbCr ...) is Pillow's own conversion. The result is
    always a new, decoded image, so it outlives the file the caller opened it from.
    """
    if image.mode in _INTEGER_MODES:
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(values, 0, _INTEGER_MODES[image.mode]) * (255.0 / _INTEGER_MODES[image.mode])
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return Image.fromarray(np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Open, decode and convert an image file to 8-bit RGB (see `to_rgb`). Raises what Pillow raises
    (`OSError`, `ValueError`, `Image.DecompressionBombError`) for a missing or unreadable file."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)
