"""The step-time cost of deterministic kernels (`--deterministic`; the trainer's default on CPU).

    python -m benchmarks.determinism [--device cuda] [--smoke] [--out DIR]

The trainer's stage-2 step (forward, FGCLIPLoss with regional and hard-negative terms, backward, AdamW) on
the FineHARD-like load of `benchmarks.stage2` (4 boxes x 11 texts per image), timed with deterministic
algorithms off and on, interleaved in one process on the same model and batch; the figure is the median
per-round time ratio on / off. "On" is what `fgclip.train.determinism` switches on: on CPU the serial
accumulation of indexing backward (instead of atomic adds across threads); on GPUs also cuDNN without
autotuning and torchvision's deterministic RoIAlign backward. `CUBLAS_WORKSPACE_CONFIG` is set for the whole
process (cuBLAS reads it once), so both candidates share it and the ratio leaves its (small) cost out.
"""

from __future__ import annotations

import os

import torch

from benchmarks.harness import (
    Figure,
    Report,
    describe_device,
    paired_ratio,
    time_interleaved,
    with_smaller_batch_on_oom,
)
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, get_shape
from benchmarks.steps import FGCLIPStep, make_adamw
from benchmarks.workload import make_batch, make_records, make_samples
from fgclip.tokenizer import FGCLIPTokenizer

NAME = "determinism"


class _WithDeterminism:
    """A step run with deterministic algorithms switched on or off (global torch state, set per call)."""

    def __init__(self, step: FGCLIPStep, deterministic: bool):
        self.step, self.deterministic = step, deterministic

    def __call__(self) -> None:
        torch.use_deterministic_algorithms(self.deterministic)
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cudnn.benchmark = not self.deterministic
        try:
            self.step()
        finally:
            torch.use_deterministic_algorithms(False)

    @property
    def last_loss(self):
        return self.step.last_loss


def _measure(settings: BenchSettings, batch_size: int) -> dict:
    shape = get_shape(settings.shape_name())
    device = settings.torch_device
    records = make_records(batch_size, settings.seed)
    batch = make_batch(make_samples(records, shape.image_size, True, settings.seed), True, FGCLIPTokenizer())
    model = build_fgclip(shape, settings.seed).to(device)
    step = FGCLIPStep(model, batch.to(device), 2, settings, module=model, optimizer=make_adamw(model, settings))
    candidates = {"default_kernels": _WithDeterminism(step, False), "deterministic": _WithDeterminism(step, True)}
    timings = time_interleaved(candidates, device, settings.warmup_or(2), settings.repeats_or(7))
    if not torch.isfinite(step.last_loss).all():
        raise FloatingPointError("non-finite loss")
    return {"timings": timings, "shape": shape.name, "regions": batch.num_regions}


def run(settings: BenchSettings) -> Report:
    if settings.on_gpu:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    requested = settings.batch_or(cpu=8, gpu=64, smoke=2)
    result, batch_size = with_smaller_batch_on_oom(lambda size: _measure(settings, size), requested)
    timings = result["timings"]
    device = describe_device(settings.torch_device)
    figures = [
        Figure(
            "stage-2 step, deterministic / default kernels",
            paired_ratio(timings["deterministic"], timings["default_kernels"]),
            "x",
            None,
            f"shape {result['shape']}, batch {batch_size}, {result['regions']} regions; {device['torch_threads']} "
            "threads"
            if not settings.on_gpu
            else f"shape {result['shape']}, batch {batch_size}",
        ),
        Figure(
            f"stage-2 images/s, default kernels (batch {batch_size})",
            batch_size / timings["default_kernels"].median,
            "images/s",
            None,
            device["name"],
        ),
        Figure(
            f"stage-2 images/s, deterministic (batch {batch_size})",
            batch_size / timings["deterministic"].median,
            "images/s",
            None,
            device["name"],
        ),
    ]
    details = {
        "batch_size": batch_size,
        "requested_batch_size": requested,
        "shape": result["shape"],
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    return Report(NAME, figures, details, device, settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
