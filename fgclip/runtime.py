"""Where and in what precision to run: device names, dtype names, the autocast choice, a free port.

The one home of these rules for every command (evaluations, the LLaVA tools, the trainer, the data engine,
the benchmarks). Standard library at import; torch is imported by the functions that need it, so a command
can use them after parsing its options.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

from fgclip.errors import UserError

if TYPE_CHECKING:
    import torch

# Accepted dtype names (torch's and the short ones of --precision / --bf16 style options) -> torch attribute.
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """'auto' (CUDA when there is a GPU, else CPU), 'cpu', 'cuda' or 'cuda:N' as a `torch.device`.

    A name torch does not know, CUDA asked for without a GPU, or a GPU index that does not exist is a
    `UserError` naming `option`.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as cause:
        raise UserError(f"{option} {name!r} is not a device name (use auto, cpu, cuda or cuda:N)") from cause
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {name} asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{option} {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def dtype_by_name(name: str) -> torch.dtype:
    """'float32' / 'fp32', 'bfloat16' / 'bf16', 'float16' / 'fp16' -> the torch dtype; `UserError` otherwise."""
    import torch

    if name not in DTYPE_NAMES:
        raise UserError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, DTYPE_NAMES[name])


def default_dtype(device: torch.device) -> torch.dtype:
    """The weights' dtype 'auto' means: bfloat16 on a GPU that supports it (the paper's precision), float16
    on an older GPU, float32 on CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a `--precision` of `PRECISIONS` (or a dtype name), or None for plain fp32.

    'auto' is `default_dtype` on a GPU and fp32 on CPU; fp16 needs a GPU (`UserError` on CPU).
    """
    if precision == "auto":
        return None if device.type != "cuda" else default_dtype(device)
    dtype = dtype_by_name(precision)
    if str(dtype) == "torch.float32":
        return None
    if str(dtype) == "torch.float16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` on `device` in `dtype`, or a no-op context for None (plain fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype)


def free_port() -> int:
    """A TCP port free on this machine now, for a single-node process group's MASTER_PORT."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
