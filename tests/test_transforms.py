"""Preprocessing: square resize without crop, CLIP normalisation, same as the exported image processor."""

import numpy as np
import torch
from PIL import Image

from fgclip.transforms import CLIP_MEAN, CLIP_STD, image_processor, image_transform


def test_resizes_to_a_square_without_cropping():
    wide = Image.new("RGB", (200, 50), (255, 0, 0))
    wide.paste((0, 0, 255), (150, 0, 200, 50))  # a blue right quarter must survive: no centre crop
    pixels = image_transform(32)(wide)
    assert pixels.shape == (3, 32, 32)
    blue = (1.0 - CLIP_MEAN[2]) / CLIP_STD[2]
    assert torch.allclose(pixels[2, :, -4:], torch.full((32, 4), blue), atol=0.05)


def test_matches_the_image_processor_that_exports_carry():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8))
    ours = image_transform(32)(image)
    theirs = torch.tensor(image_processor(32)(image, return_tensors="np")["pixel_values"][0])
    assert theirs.shape == ours.shape
    # Both use PIL bicubic; the last-bit difference is uint8 rounding inside the processor.
    assert (ours - theirs).abs().mean() < 0.02


def test_grayscale_and_rgba_images_become_rgb():
    assert image_transform(16)(Image.new("L", (20, 20), 128)).shape == (3, 16, 16)
    assert image_transform(16)(Image.new("RGBA", (20, 20))).shape == (3, 16, 16)
