"""What the model-backed steps share: device and dtype choice, image opening, batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from fgclip.images import to_rgb
from fgclip.pipeline.errors import PipelineError

_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def check_device(name: str) -> None:
    """Refuse `--device cuda` where torch sees no GPU (instead of silently running on CPU)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {name} asked for a GPU but torch sees none")


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """ "auto" -> bfloat16 on GPU (the paper's precision), float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise PipelineError(f"unknown dtype {name!r}; use auto, bfloat16, float16 or float32")
    return _DTYPES[name]


def load_model(auto_class, name: str, device: str, dtype: torch.dtype, trust_remote_code: bool = False):
    """`auto_class.from_pretrained(name)` on `device`, in eval mode.

    device "cuda" (no index) spreads the model over every visible GPU with accelerate's
    `device_map="auto"`, for models larger than one GPU (a 70B LM); "cuda:N" or "cpu" holds one copy.
    """
    if device == "cuda":
        return auto_class.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code, device_map="auto"
        ).eval()
    return auto_class.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code).to(device).eval()


def to_model_inputs(inputs, model, dtype: torch.dtype) -> dict:
    """Tensors moved to the device of the model's input layer; floating ones (pixels) cast to `dtype`."""
    device = model.device
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}


def open_image(path: str | Path) -> Image.Image | None:
    """The image as RGB, or None when the file is missing or not an image (the caller counts it)."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError):
        return None


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
