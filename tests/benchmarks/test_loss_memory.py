"""Loss memory measurement: exact CPU byte counting, the simulated rank, and the power-law fit."""

from __future__ import annotations

import pytest
import torch

import fgclip.losses
from benchmarks.loss_memory import cpu_peak_bytes, measure_rank, power_law_exponent, simulated_rank


def test_cpu_peak_counts_what_the_run_holds_at_once():
    def run():
        first = torch.empty(1_000_000, dtype=torch.float32)  # 4 MB
        del first
        second = torch.empty(250_000, dtype=torch.float32)  # 1 MB, while...
        third = torch.empty(500_000, dtype=torch.float32)  # ...2 MB more
        return second, third

    assert cpu_peak_bytes(run) == 4_000_000


def test_simulated_rank_feeds_the_librarys_loss_a_global_batch():
    image, text = torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(10.0)
    seen = {}
    real_gather = fgclip.losses.gather_with_grad

    with simulated_rank(world_size=3):
        gathered, offset = fgclip.losses.gather_with_grad(image)
        seen["rows"], seen["offset"] = gathered.shape[0], offset
        assert torch.equal(gathered[:4], image)
        loss = fgclip.losses.global_contrastive_loss(image, text, scale)
    assert seen == {"rows": 12, "offset": 0}
    assert torch.isfinite(loss)
    assert fgclip.losses.gather_with_grad is real_gather  # restored after the block


def test_power_law_exponent():
    sizes = [1, 2, 4, 8]
    assert power_law_exponent(sizes, [3 * s for s in sizes]) == pytest.approx(1.0)
    assert power_law_exponent(sizes, [5 * s * s for s in sizes]) == pytest.approx(2.0)


def test_loss_memory_grows_linearly_with_the_global_batch_at_a_fixed_local_batch():
    sizes = [2, 4, 8, 16]  # ranks of 64 rows each: global 128 .. 1024
    peaks = [measure_rank(64, world, 32, torch.device("cpu")) for world in sizes]
    assert all(b > a for a, b in zip(peaks, peaks[1:]))
    assert 0.8 < power_law_exponent([64 * w for w in sizes], peaks) < 1.2
    # scoring the whole batch on one rank is quadratic
    full = [measure_rank(64 * world, 1, 32, torch.device("cpu")) for world in sizes]
    assert power_law_exponent([64 * w for w in sizes], full) > 1.5
