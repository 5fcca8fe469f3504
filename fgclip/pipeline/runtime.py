"""What the model-backed steps share: device and dtype choice, model loading, image opening, batching."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.images import to_rgb
from fgclip.pipeline.config import ModelLoading

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
        raise UserError(f"--device {name} asked for a GPU but torch sees none")


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """ "auto" -> bfloat16 on GPU (the paper's precision), float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise UserError(f"unknown dtype {name!r}; use auto, bfloat16, float16 or float32")
    return _DTYPES[name]


def load_pretrained(
    what: str, name: str, preprocessor_class, model_class, device: str, loading: ModelLoading | None = None
):
    """`(preprocessor, model, dtype)` from `preprocessor_class` and `model_class`, the model in the precision
    `loading` asks for, on `device`, in eval mode. A folder or Hub name that does not load is a one-line error
    naming `what` ("the caption model").

    device "cuda" (no index) spreads the model over every visible GPU with accelerate's
    `device_map="auto"`, for models larger than one GPU (a 70B LM); "cuda:N" or "cpu" holds one copy.
    """
    loading = loading or ModelLoading()
    dtype, trust_remote_code = resolve_dtype(loading.dtype, device), loading.trust_remote_code
    try:
        preprocessor = preprocessor_class.from_pretrained(name, trust_remote_code=trust_remote_code)
        if device == "cuda":
            model = model_class.from_pretrained(
                name, dtype=dtype, trust_remote_code=trust_remote_code, device_map="auto"
            )
        else:
            model = model_class.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code).to(device)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load {what} {name!r}: {str(error).splitlines()[0]}") from error
    return preprocessor, model.eval(), dtype


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


def image_batches(
    records: Sequence[Record], size: int, counts: Counter, dropped: set[int]
) -> Iterator[tuple[list[Record], list[Image.Image]]]:
    """Batches of up to `size` records with their images opened (image paths are absolute from the input split
    on). A record whose image does not open is left out, counted as `dropped_unreadable_image` and its `id` added
    to `dropped` (the step drops it from its output)."""
    for batch in batches(records, size):
        usable, images = [], []
        for record in batch:
            image = open_image(record.image)
            if image is None:
                counts["dropped_unreadable_image"] += 1
                dropped.add(id(record))
            else:
                usable.append(record)
                images.append(image)
        if usable:
            yield usable, images
