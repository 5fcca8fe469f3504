"""Bitwise reproducible training: the same seed and arguments give the same weights, and a resumed run the
weights of the uninterrupted one.

What made runs differ, and what fixes it:

* data order and per-sample choices: a seeded sampler and one seed per sample (`fgclip.data.sampler`), so
  neither the number of data-loader workers nor a resume changes them; loader workers draw nothing else;
* RNG streams: every rank's Python / NumPy / torch states are saved with each checkpoint and restored;
* multi-threaded CPU kernels: the backward of indexing with repeated indices (`short[hard_index]` in the
  loss, where one text is the positive or negative of several boxes) is `index_put_(accumulate=True)`,
  which on more than one thread adds with atomic float additions in whatever order the threads reach
  them. `torch.use_deterministic_algorithms(True)` makes it (and every other op with a deterministic
  variant) add in a fixed order. The other candidates were measured deterministic on CPU: embedding and
  RoIAlign backward, reductions and GEMMs at a fixed thread count.

On CPU this is the default (`--no-deterministic` turns it off). On GPUs it is `--deterministic`: besides
the flag above it sets `CUBLAS_WORKSPACE_CONFIG=:4096:8`, turns off cuDNN autotuning, and torchvision's
RoIAlign then runs its deterministic (slower) backward; `benchmarks/determinism.py` measures the cost.
Results still depend on the number of processes and threads per process: change those and the sums are
taken in another order.
"""

from __future__ import annotations

import os

import torch


def configure_determinism(device: torch.device, deterministic: bool | None) -> bool:
    """Switch deterministic kernels on (default on CPU, opt-in on GPU); returns whether they are on."""
    enabled = device.type == "cpu" if deterministic is None else deterministic
    if enabled:
        if device.type == "cuda":
            # cuBLAS reads this when it creates its handle, i.e. at the first GEMM: set it before any
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)
    return enabled
