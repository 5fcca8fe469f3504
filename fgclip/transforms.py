"""FG-CLIP image preprocessing: resize to a square (aspect not kept), then CLIP normalisation.

This is the preprocessing of every model in training and evaluation, a stock CLIP folder included: a Hub
folder's own `preprocessor_config.json` (shortest-edge resize + centre crop) is not used, so a CLIP
baseline sees the same pixels as FG-CLIP, as in the official code (which resizes to a square before its
processor). Folders written by `fgclip.convert` carry `image_processor`, the same steps for transformers.
"""

from __future__ import annotations

from torchvision import transforms as T
from transformers import CLIPImageProcessor

from fgclip.images import to_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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


def image_processor(image_size: int) -> CLIPImageProcessor:
    """The same preprocessing as a transformers `CLIPImageProcessor` (square resize, no centre crop).

    This is what exported vision towers and LLaVA models carry; `crop_size` is kept because the
    original LLaVA code reads it to make blank images.
    """
    return CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        do_resize=True,
        resample=3,  # PIL bicubic
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )
