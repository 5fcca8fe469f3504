"""Item 3: peak memory of the global loss per rank, local loss + gather-with-grad, at global batches 1k-32k.

    python -m benchmarks.run loss_memory [--device cuda] [--smoke] [--output_dir DIR]

One process plays one rank of W: `fgclip.losses.gather_with_grad` is swapped for a stand-in that returns
what all-gather returns on that rank (the W-1 other ranks' features, freshly allocated as the collective
would, then this rank's with their gradient path), and the library's own `global_contrastive_loss` runs
forward and backward on it. Peak bytes allocated while it runs are read from the CUDA allocator on a GPU,
and on a CPU from the profiler's allocation events (every allocation and free the loss makes).

Reference in the same run: the same loss with every rank scoring the whole global batch (no local loss),
which holds G x G logits. Reported: the exponent of a power-law fit of peak memory against the global
batch at a fixed local batch (1 = linear) and against the local batch at a fixed global batch, and the
reference's exponent (2 = quadratic).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from tqdm.auto import tqdm

import fgclip.losses
from benchmarks.harness import Figure, Report, describe_device, synchronize
from benchmarks.settings import BenchSettings

NAME = "loss_memory"
EMBED_DIM = 512  # ViT-B/16's joint space


@contextlib.contextmanager
def simulated_rank(world_size: int):
    """Within the block, `gather_with_grad` behaves as on rank 0 of `world_size` equal ranks."""

    def gather(features: torch.Tensor) -> tuple[torch.Tensor, int]:
        others = torch.randn(
            (world_size - 1) * features.shape[0], features.shape[1], device=features.device, dtype=features.dtype
        )  # what the collective receives from the other ranks
        return torch.cat([features, others]), 0

    with mock.patch.object(fgclip.losses, "gather_with_grad", gather):
        yield


def _loss_step(local_batch: int, dim: int, device: torch.device, generator: torch.Generator):
    """Leaf features (the model's outputs, allocated before measuring) and the step to measure."""
    image = torch.nn.functional.normalize(torch.randn(local_batch, dim, generator=generator), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(local_batch, dim, generator=generator), dim=-1)
    image, text = image.to(device).requires_grad_(), text.to(device).requires_grad_()
    scale = torch.tensor(100.0, device=device, requires_grad=True)

    def step() -> None:
        fgclip.losses.global_contrastive_loss(image, text, scale).backward()

    return step


def cpu_peak_bytes(run) -> int:
    """Peak bytes of CPU tensors alive at once during `run()`, counting only what `run` allocates.

    The profiler reports every CPU allocation and free with the running total of bytes allocated while
    profiling; the peak of that total over the run, less its starting point, is the run's peak.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        profiler.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted(
        (e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0), key=lambda e: e["ts"]
    )
    if not memory:
        return 0
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in memory) - start


def peak_bytes(run, device: torch.device) -> int:
    if device.type == "cpu":
        return cpu_peak_bytes(run)
    synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def measure_rank(local_batch: int, world_size: int, dim: int, device: torch.device, seed: int = 0) -> int:
    """Peak bytes the global loss allocates on one rank (local batch x world size = global batch)."""
    step = _loss_step(local_batch, dim, device, torch.Generator().manual_seed(seed))
    with simulated_rank(world_size):
        return peak_bytes(step, device)


def power_law_exponent(sizes: list[int], values: list[float]) -> float:
    """Slope of log(value) against log(size): 1 for linear growth, 2 for quadratic."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def _plan(settings: BenchSettings) -> dict:
    if settings.smoke:
        return {
            "dim": 16,
            "local": 16,
            "globals": [32, 64, 128],
            "fixed_global": 128,
            "locals": [8, 16, 32],
            "reference_globals": [32, 64, 128],
        }
    reference = [1024, 2048, 4096, 8192, 16384] if settings.on_gpu else [1024, 2048, 4096]
    return {
        "dim": EMBED_DIM,
        "local": 256,
        "globals": [1024, 2048, 4096, 8192, 16384, 32768],
        "fixed_global": 8192,
        "locals": [128, 256, 512, 1024],
        "reference_globals": reference,
    }


def run(settings: BenchSettings) -> Report:
    plan, device = _plan(settings), settings.torch_device
    dim = plan["dim"]
    jobs = (
        [("by_global", plan["local"], g // plan["local"]) for g in plan["globals"]]
        + [("by_local", b, plan["fixed_global"] // b) for b in plan["locals"]]
        + [("reference", g, 1) for g in plan["reference_globals"]]
    )
    rows = []
    for series, local_batch, world_size in tqdm(jobs, desc="loss memory", disable=not settings.progress):
        peak = measure_rank(local_batch, world_size, dim, device, settings.seed)
        rows.append(
            {
                "series": series,
                "local_batch": local_batch,
                "world_size": world_size,
                "global_batch": local_batch * world_size,
                "peak_bytes": peak,
            }
        )

    def series(name: str, key: str) -> tuple[list[int], list[float]]:
        chosen = [row for row in rows if row["series"] == name]
        return [row[key] for row in chosen], [row["peak_bytes"] for row in chosen]

    by_global = power_law_exponent(*series("by_global", "global_batch"))
    by_local = power_law_exponent(*series("by_local", "local_batch"))
    reference = power_law_exponent(*series("reference", "global_batch"))
    largest = max(plan["globals"])
    largest_peak = series("by_global", "global_batch")[1][-1]
    common = max(plan["reference_globals"])
    local_at_common = next(r["peak_bytes"] for r in rows if r["series"] == "by_global" and r["global_batch"] == common)
    full_at_common = next(r["peak_bytes"] for r in rows if r["series"] == "reference" and r["global_batch"] == common)
    figures = [
        Figure(
            f"exponent of peak loss memory vs global batch (local batch {plan['local']})",
            by_global,
            "",
            ("<=", 1.2),
            f"global {min(plan['globals'])}-{largest}: 1 = linear, 2 = quadratic",
        ),
        Figure(
            f"exponent of peak loss memory vs local batch (global batch {plan['fixed_global']})",
            by_local,
            "",
            ("<=", 1.2),
            f"local {min(plan['locals'])}-{max(plan['locals'])}",
        ),
        Figure(
            "reference (every rank scores the whole batch): exponent vs global batch",
            reference,
            "",
            None,
            f"global {min(plan['reference_globals'])}-{common}",
        ),
        Figure(
            f"peak loss memory, local / whole-batch scoring, at global batch {common}",
            local_at_common / full_at_common,
            "x",
            None,
            f"local batch {plan['local']}",
        ),
        Figure(
            f"peak loss memory per rank at global batch {largest} (local {plan['local']})",
            largest_peak / 2**20,
            "MiB",
            None,
            f"embedding dim {dim}, fp32",
        ),
    ]
    details = {
        "rows": rows,
        "embedding_dim": dim,
        "dtype": "float32",
        "method": "cuda max_memory_allocated" if settings.on_gpu else "torch.profiler CPU allocation events",
        "expected_bytes_note": "per rank ~ 2 logit matrices of local x global fp32 plus their gradients",
    }
    return Report(NAME, figures, details, describe_device(device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
