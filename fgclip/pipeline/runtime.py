"""What the model-backed steps share: device and dtype choice, image opening, batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from fgclip.pipeline.errors import PipelineError

_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def resolve_device(name: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"; an explicit name is checked."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {name} asked for a GPU but torch sees none")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """ "auto" -> bfloat16 on GPU (the paper's precision), float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise PipelineError(f"unknown dtype {name!r}; use auto, bfloat16, float16 or float32")
    return _DTYPES[name]


def open_image(path: str | Path) -> Image.Image | None:
    """The image as RGB, or None when the file is missing or not an image (the caller counts it)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError):
        return None


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
