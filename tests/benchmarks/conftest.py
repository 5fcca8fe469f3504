"""Fixtures for the benchmark tests: a small FineHARD-like workload shared by the tests."""

from __future__ import annotations

import pytest

from benchmarks.workload import Workload, make_records, make_samples


@pytest.fixture(scope="module")
def stage2_samples():
    """3 images with 4 regions x (1 + 3 negatives) each, at the tiny shape's 32 px."""
    return make_samples(make_records(3, seed=1, workload=Workload(negatives_per_region=3)), 32, True, seed=1)
