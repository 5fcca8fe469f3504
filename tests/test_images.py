"""High-bit-depth images are scaled to 8 bits, not clipped to white, wherever an image is read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fgclip.images import open_rgb, to_rgb
from fgclip.transforms import image_transform


def _ramp16(path):
    """A 16-bit greyscale PNG whose values run over the whole 0..65535 range."""
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    values = _ramp16(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    rgb = np.asarray(open_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    expected = np.rint(values / 257.0)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert 120 < rgb.mean() < 135  # Pillow's own convert("RGB") gives about 254 here


def test_32_bit_integer_and_float_modes():
    as_int = Image.fromarray(np.full((4, 4), 65535, dtype=np.int32))
    assert as_int.mode == "I" and np.asarray(to_rgb(as_int)).min() == 255
    half = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    assert half.mode == "F" and np.asarray(to_rgb(half))[0, 0, 0] == 128


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_eight_bit_modes_keep_pillows_conversion(mode):
    image = Image.new("RGB", (4, 4), (10, 200, 30)).convert(mode)
    assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB")))


def test_the_model_transform_reads_16_bit_images_scaled(tmp_path):
    _ramp16(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        pixels = image_transform(16)(image)
    # normalised pixels of a mid-grey ramp average near zero; a saturated image would be near +1.9
    assert abs(float(pixels.mean())) < 0.5


def test_result_outlives_the_opened_file(tmp_path):
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "rgb.png")
    with Image.open(tmp_path / "rgb.png") as image:
        converted = to_rgb(image)
    assert converted.getpixel((0, 0)) == (1, 2, 3)
