"""The timing harness, figures and reports (no test here asserts a timing)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.harness import (
    Figure,
    Report,
    Timing,
    describe_device,
    drop_what_does_not_fit,
    paired_ratio,
    time_interleaved,
    with_smaller_batch_on_oom,
)


def test_rounds_interleave_the_candidates_after_warmup():
    calls = []
    timings = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, torch.device("cpu"), warmup=2, repeats=3
    )
    assert calls == ["a", "b"] * 5
    assert {name: len(t.seconds) for name, t in timings.items()} == {"a": 3, "b": 3}
    assert all(s >= 0 for t in timings.values() for s in t.seconds)
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, torch.device("cpu"), warmup=0, repeats=0)


def test_timing_median_and_spread():
    timing = Timing("x", [3.0, 1.0, 2.0])
    assert timing.median == 2.0
    assert timing.spread == pytest.approx(1.0)
    assert timing.as_dict()["repeats"] == 3


def test_figures_judge_and_format_their_targets():
    assert Figure("r", 1.02, "x", ("<=", 1.05)).meets_target is True
    assert Figure("r", 1.2, "x", ("<=", 1.05)).formatted_target() == "<= 1.05x MISSED"
    assert Figure("m", 45.0, "%", (">=", 40.0)).meets_target is True
    assert Figure("none", None, "x", ("<=", 1.0)).meets_target is None
    assert Figure("r", 1.23456, "x").formatted_value() == "1.235x"
    assert Figure("t", 12345.6, "images/s").formatted_value() == "12,346 images/s"


def test_report_writes_json_with_device_and_a_markdown_table(tmp_path):
    device = describe_device(torch.device("cpu"))
    assert "CPU" in device["name"] and device["torch"] == torch.__version__
    report = Report("demo", [Figure("ratio", 0.9, "x", ("<=", 1.05), "note")], {"k": 1}, device, {"smoke": True})
    path = report.write(tmp_path, tag="t1")
    assert path.name == "demo-t1.json"
    data = json.loads(path.read_text())
    assert data["figures"][0]["meets_target"] is True
    assert data["device"]["name"] == device["name"] and data["date"]
    table = report.markdown()
    assert "| ratio | 0.900x | <= 1.05x met | note |" in table and device["name"] in table


def test_out_of_memory_halves_the_batch_until_it_fits():
    tried = []

    def attempt(size):
        tried.append(size)
        if size > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return size * 10

    assert with_smaller_batch_on_oom(attempt, 64) == (160, 16)
    assert tried == [64, 32, 16]


def test_other_errors_are_not_retried():
    def attempt(size):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_smaller_batch_on_oom(attempt, 8)


def test_nothing_is_dropped_on_cpu():
    candidates = {"a": lambda: None}
    assert drop_what_does_not_fit(candidates, torch.device("cpu")) == (candidates, [])


def _out_of_memory():
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_candidates_that_run_out_of_gpu_memory_are_dropped_and_named(monkeypatch):
    import benchmarks.harness as harness

    monkeypatch.setattr(harness, "synchronize", lambda device: None)  # no GPU here: the logic is what is tested
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    ran = []
    candidates = {"small": lambda: ran.append("small"), "huge": _out_of_memory}
    kept, dropped = drop_what_does_not_fit(candidates, torch.device("cuda"))
    assert list(kept) == ["small"] and dropped == ["huge"] and ran == ["small"]
    with pytest.raises(torch.OutOfMemoryError):
        drop_what_does_not_fit(candidates, torch.device("cuda"), required=("huge",))


def test_paired_ratio_takes_each_round_on_its_own():
    # round 2 was slow for both (a busy machine): per-round ratios stay 0.5, the ratio of medians does not
    fast, slow = Timing("a", [1.0, 10.0, 1.0]), Timing("b", [2.0, 20.0, 2.0])
    assert paired_ratio(fast, slow) == 0.5
    assert paired_ratio(Timing("a", [1.0]), Timing("b", [0.0])) is None
