"""FG-CLIP's image preprocessing as a transformers `CLIPImageProcessor`: resize to a square (aspect not kept,
no centre crop), then CLIP's normalisation. The one definition of those steps: `fgclip.transforms` builds the
torchvision pipeline of training and evaluation from the same numbers, and every folder fgclip writes (a model,
an exported vision tower, ONNX graphs) carries this processor.

Only transformers APIs that 4.37 (the original LLaVA's pin) and 5.x share, and no torch at import.
"""

from __future__ import annotations

from transformers import CLIPImageProcessor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = 3  # PIL's bicubic: the resampling of CLIP's and FG-CLIP's preprocessing


def image_processor(image_size: int) -> CLIPImageProcessor:
    """Square resize to `image_size` without centre crop, CLIP normalisation.

    `crop_size` is kept because the original LLaVA code reads it to make blank images, and `image_mean`
    because it pads images to a square with it.
    """
    return CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        do_resize=True,
        resample=BICUBIC,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )
