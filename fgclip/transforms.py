"""FG-CLIP image preprocessing: resize to a square (aspect not kept), then CLIP normalisation.

This is the preprocessing of every model in training and evaluation, a stock CLIP folder included: a Hub
folder's own `preprocessor_config.json` (shortest-edge resize + centre crop) is not used, so a CLIP
baseline sees the same pixels as FG-CLIP, as in the official code (which resizes to a square before its
processor). Folders written by fgclip carry `image_processor` (`fgclip.image_processing`), the same steps
for transformers.
"""

from __future__ import annotations

from torchvision import transforms as T

from fgclip.image_processing import CLIP_MEAN, CLIP_STD, image_processor
from fgclip.images import to_rgb

__all__ = ["CLIP_MEAN", "CLIP_STD", "image_processor", "image_transform"]


def image_transform(image_size: int) -> T.Compose:
    """PIL image -> normalised `(3, S, S)` tensor, the way FG-CLIP preprocesses for training and eval."""
    return T.Compose(
        [
            T.Lambda(to_rgb),
            T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )
