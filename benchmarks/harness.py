"""Timing, device description and reports shared by every benchmark.

A benchmark times its candidate and a reference on the same data, shape and machine, in one process,
interleaved (A, B, A, B, ...) so that drift of the machine (other jobs, clocks, heat) hits both alike,
after warm-up. Every headline ratio is taken round by round (both times of a round saw the same
machine) and summarised by its median (`paired_ratio`); absolute rates use the median time and are
written only next to the device they came from (`describe_device`).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall-clock seconds of each timed repetition of one candidate."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repetitions were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "median_s": self.median,
            "min_s": min(self.seconds),
            "max_s": max(self.seconds),
            "repeats": len(self.seconds),
            "spread": round(self.spread, 4),
            "seconds": list(self.seconds),
        }


def time_interleaved(
    candidates: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, Timing]:
    """Run each candidate `warmup` times, then `repeats` timed rounds (one call of each per round).

    Rounds interleave the candidates, so a slow patch of the machine costs every candidate one
    repetition rather than all of one candidate's. The device is synchronised around each call.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        for run in candidates.values():
            run()
    synchronize(device)
    timings = {name: Timing(name) for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            timings[name].seconds.append(time.perf_counter() - started)
    return timings


def cpu_name() -> str:
    """The processor's marketing name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe_device(device: torch.device) -> dict:
    """What the figures were measured on: the device name and the software that ran them."""
    import transformers

    cores = usable_cores()
    description = {
        "device": device.type,
        "cpu": f"{cpu_name()} ({cores} cores)",
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        description.update(
            gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1), cuda=torch.version.cuda
        )
        description["name"] = properties.name
    else:
        description["name"] = f"{cores}-core CPU ({cpu_name()})"
    return description


@dataclass
class Figure:
    """One reported number. Ratios are `unit="x"`; a target is `(op, threshold)` with op `<=` or `>=`."""

    name: str
    value: float | None
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def meets_target(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        op, threshold = self.target
        return self.value <= threshold if op == "<=" else self.value >= threshold

    def formatted_value(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "x":
            return f"{self.value:.3f}x"
        if self.unit == "%":
            return f"{self.value:.1f}%"
        magnitude = abs(self.value)
        text = f"{self.value:.3g}" if magnitude < 1000 else f"{self.value:,.0f}"
        return f"{text} {self.unit}".strip()

    def formatted_target(self) -> str:
        if self.target is None:
            return ""
        op, threshold = self.target
        verdict = {True: "met", False: "MISSED", None: ""}[self.meets_target]
        unit = self.unit if self.unit in ("x", "") else f" {self.unit}"
        return f"{op} {threshold:g}{unit} {verdict}".strip()


@dataclass
class Report:
    """The result of one benchmark run: headline figures plus every measurement behind them."""

    benchmark: str
    figures: list[Figure]
    details: dict
    device: dict
    settings: dict
    date: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    command: str = field(default_factory=lambda: " ".join(["python", "-m", "benchmarks.run", *sys.argv[1:]]))

    def figure(self, name: str) -> Figure:
        for item in self.figures:
            if item.name == name:
                return item
        raise KeyError(name)

    @classmethod
    def from_json(cls, data: dict) -> Report:
        figures = [
            Figure(
                item["name"],
                item["value"],
                item["unit"],
                tuple(item["target"]) if item["target"] else None,
                item.get("note", ""),
            )
            for item in data["figures"]
        ]
        return cls(
            data["benchmark"], figures, data["details"], data["device"], data["settings"], data["date"], data["command"]
        )

    def to_json(self) -> dict:
        data = asdict(self)
        for item, figure in zip(data["figures"], self.figures):
            item["meets_target"] = figure.meets_target
        return data

    def markdown(self) -> str:
        """A table of the figures, with the device, date and command they belong to."""
        lines = [
            f"### {self.benchmark} ({self.device['name']}, {self.date})",
            "",
            f"`{self.command}`",
            "",
            "| figure | value | target | note |",
            "|---|---|---|---|",
        ]
        for figure in self.figures:
            lines.append(
                f"| {figure.name} | {figure.formatted_value()} | {figure.formatted_target()} | {figure.note} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, tag: str | None = None) -> Path:
        """`OUT/<benchmark>[-<tag>].json` (figures, details, device, settings, date, command)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.benchmark}{f'-{tag}' if tag else ''}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return path


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def paired_ratio(numerator: Timing, denominator: Timing) -> float | None:
    """Median over rounds of (numerator's time / denominator's time) in the same round.

    Rounds interleave the candidates, so both times of a round saw the same machine; on a shared or
    throttling machine this is far steadier than the ratio of the two medians.
    """
    pairs = [a / b for a, b in zip(numerator.seconds, denominator.seconds) if b > 0]
    return statistics.median(pairs) if pairs else None


def peak_memory_bytes(run: Callable[[], object], device: torch.device) -> int | None:
    """Peak GPU memory allocated during one call of `run` (None on CPU, where there is no such counter)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def require_finite_losses(candidates: dict) -> None:
    """Refuse the timings of candidate steps whose last loss (`run.last_loss`) is not finite."""
    for name, run in candidates.items():
        if not torch.isfinite(run.last_loss).all():
            raise FloatingPointError(f"{name}: non-finite loss")


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def with_smaller_batch_on_oom(attempt: Callable[[int], object], batch_size: int, smallest: int = 1):
    """`attempt(batch_size)`, halving the batch after each GPU out-of-memory error.

    Returns `(result, batch_size_used)`, so a report can say which batch fitted the device.
    """
    while True:
        try:
            return attempt(batch_size), batch_size
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or batch_size // 2 < smallest:
                raise
            print(f"out of memory at batch {batch_size}; retrying with {batch_size // 2}", file=sys.stderr)
        # Outside the `except`: the error and the frames it holds (models, activations) are gone now.
        batch_size //= 2
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def drop_what_does_not_fit(
    candidates: dict[str, Callable[[], object]], device: torch.device, required: tuple[str, ...] = ()
) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """On a GPU, run each candidate once and drop those that run out of memory (their names are returned,
    a finding in itself). A `required` candidate that does not fit raises, so the caller can shrink the batch."""
    if device.type != "cuda":
        return candidates, []
    kept, dropped = {}, []
    for name, run in candidates.items():
        fits = True
        try:
            run()
            synchronize(device)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or name in required:
                raise
            fits = False
        if fits:
            kept[name] = run
        else:  # freed only now, outside the `except` that held the failed step's frames
            dropped.append(name)
            gc.collect()
            torch.cuda.empty_cache()
    return kept, dropped
