"""The settings every benchmark runs with: the options of `python -m benchmarks.run`, parsed once.

Light at import (no torch), so that `--help` and usage errors answer at once; the device is resolved on first
use of `torch_device` (`benchmarks.run` does that before any benchmark loads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from benchmarks.shapes import SHAPES
from fgclip.cli import non_negative_int, option, positive_float, positive_int
from fgclip.runtime import autocast, autocast_dtype, resolve_device

if TYPE_CHECKING:
    import torch

# Dense bf16 matmul peak used for MFU when the GPU is one of these (measured here: H100 798, H200 ~790).
PEAK_BF16_TFLOPS = {"H100": 800.0, "H200": 790.0}


@dataclass
class BenchSettings:
    """How to run: device, precision, sizes, repetitions, and where the JSON goes.

    `shape` names a model shape of `benchmarks.shapes` (None: `tiny` in smoke mode, `small` on CPU,
    `b16` on GPU). `batch_size` None lets each benchmark choose its default for the device.
    """

    device: str = option("cpu, cuda, cuda:N or auto; on a GPU the benchmarks run bf16 autocast and fused AdamW", "cpu")
    smoke: bool = option("tiny shapes, 1 repetition: checks that the benchmark runs (numbers mean nothing)", False)
    output_dir: Path | None = option(
        "folder for NAME.json (default: print only; 'all' writes one file per benchmark)", None, aliases=["out"]
    )
    shape: str | None = option(
        "model shape: tiny, small (scaled-down ViT) or b16 (ViT-B/16 at 224) (default: tiny "
        "with --smoke, small on CPU, b16 on GPU)",
        None,
        choices=tuple(SHAPES),
    )
    batch_size: int | None = option(
        "images per step (default: each benchmark's, e.g. 256 for stage 1 on GPU); on GPU "
        "out-of-memory it is halved until it fits, and the report says so",
        None,
        type=positive_int,
    )
    repeats: int | None = option(
        "timed repetitions; the median is reported (default: each benchmark's, 1 with --smoke)", None, type=positive_int
    )
    warmup: int | None = option(
        "untimed runs before timing (default: each benchmark's, 1 with --smoke)", None, type=non_negative_int
    )
    compile: bool = option("torch.compile the models under test (and their references) before timing", False)
    peak_tflops: float | None = option(
        "peak dense TFLOP/s of the device for MFU (default: 800 on H100, 790 on H200 in bf16; no MFU otherwise)",
        None,
        type=positive_float,
    )
    seed: int = option("seed of the synthetic data and weights", 0)
    lmm_dtype: Literal["auto", "float32", "bfloat16"] = option(
        "lmm_generation only: model dtype (auto = float32: identical answers batched and one at a time need it on a "
        "random-weight model)",
        "auto",
    )
    progress: bool = True  # not an option: `--quiet` turns the progress bars off

    @cached_property
    def torch_device(self) -> torch.device:
        """`device` resolved (`fgclip.runtime.resolve_device`); a `UserError` for a bad or absent device."""
        return resolve_device(self.device)

    @property
    def on_gpu(self) -> bool:
        return self.torch_device.type == "cuda"

    @cached_property
    def autocast_dtype(self) -> torch.dtype | None:
        """The precision of `fgclip.runtime` 'auto': bf16 on GPUs that support it, fp32 on CPU."""
        return autocast_dtype("auto", self.torch_device)

    @property
    def precision(self) -> str:
        return {None: "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[
            None if self.autocast_dtype is None else str(self.autocast_dtype)
        ]

    def autocast(self):
        return autocast(self.torch_device, self.autocast_dtype)

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
        """Peak FLOP/s for MFU: `--peak_tflops`, else the known bf16 peak of the GPU, else None."""
        if self.peak_tflops is not None:
            return self.peak_tflops * 1e12
        if self.on_gpu and self.precision == "bf16":
            import torch

            name = torch.cuda.get_device_name(self.torch_device)
            for key, tflops in PEAK_BF16_TFLOPS.items():
                if key in name:
                    return tflops * 1e12
        return None

    def as_dict(self) -> dict:
        return {
            "device": str(self.torch_device),
            "smoke": self.smoke,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "shape": self.shape_name(),
            "batch_size": self.batch_size,
            "compile": self.compile,
            "precision": self.precision,
            "peak_tflops": self.peak_tflops,
            "seed": self.seed,
            "lmm_dtype": self.lmm_dtype,
        }


def silence_progress_bars() -> None:
    """No progress bars from here on, the code under test's included. tqdm reads TQDM_DISABLE once, when it is
    first imported, so this runs right after parsing, before anything imports it (this module imports no torch)."""
    os.environ["TQDM_DISABLE"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
