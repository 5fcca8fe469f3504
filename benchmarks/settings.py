"""The settings every benchmark runs with, parsed once by `benchmarks.run`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fgclip.errors import UserError

# Dense bf16 matmul peak used for MFU when the GPU is one of these (measured here: H100 798, H200 ~790).
PEAK_BF16_TFLOPS = {"H100": 800.0, "H200": 790.0}


class BenchmarkError(UserError):
    """A benchmark that cannot run as asked (one-line message; the CLI exits with code 2)."""


@dataclass
class BenchSettings:
    """How to run: device, precision, sizes, repetitions, and where the JSON goes.

    `shape` names a model shape of `benchmarks.shapes` (None: `tiny` in smoke mode, `small` on CPU,
    `b16` on GPU). `batch_size` None lets each benchmark choose its default for the device.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    smoke: bool = False
    repeats: int | None = None  # None: 1 in smoke mode, else each benchmark's default
    warmup: int | None = None
    shape: str | None = None
    batch_size: int | None = None
    compile: bool = False
    peak_tflops: float | None = None
    seed: int = 0
    out: Path | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)  # benchmark-specific options (e.g. the LMM dtype)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 autocast on GPUs that support it; fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
        if self.on_gpu and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    @property
    def precision(self) -> str:
        return "bf16" if self.autocast_dtype is not None else "fp32"

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def repeats_or(self, default: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 1 if self.smoke else default

    def warmup_or(self, default: int) -> int:
        if self.warmup is not None:
            return self.warmup
        return 1 if self.smoke else default

    def shape_name(self) -> str:
        if self.shape is not None:
            return self.shape
        if self.smoke:
            return "tiny"
        return "b16" if self.on_gpu else "small"

    def batch_or(self, cpu: int, gpu: int, smoke: int = 4) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if self.smoke:
            return smoke
        return gpu if self.on_gpu else cpu

    def peak_flops(self) -> float | None:
        """Peak FLOP/s for MFU: `--peak-tflops`, else the known bf16 peak of the GPU, else None."""
        if self.peak_tflops is not None:
            return self.peak_tflops * 1e12
        if self.on_gpu and self.autocast_dtype is torch.bfloat16:
            name = torch.cuda.get_device_name(self.device)
            for key, tflops in PEAK_BF16_TFLOPS.items():
                if key in name:
                    return tflops * 1e12
        return None

    def as_dict(self) -> dict:
        return {"device": str(self.device), "smoke": self.smoke, "repeats": self.repeats, "warmup": self.warmup,
                "shape": self.shape_name(), "batch_size": self.batch_size, "compile": self.compile,
                "precision": self.precision, "peak_tflops": self.peak_tflops, "seed": self.seed, **self.extra}


def resolve_device(name: str) -> torch.device:
    """'auto', 'cpu' or 'cuda[:N]' -> a device; `BenchmarkError` when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise BenchmarkError(f"--device {name!r} is not a device name") from error
    if device.type not in ("cpu", "cuda"):
        raise BenchmarkError(f"--device must be cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {name} asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device
