"""Benchmark: the embedded default experiment (what `python scripts/pretrain_fgclip.py` runs).

    python -m benchmarks.default_experiment [--output_file benchmarks/results/default_experiment.json]

Runs the whole experiment (synthesis, stage 1, stage 2, held-out evaluation) in this process, times it,
and writes one JSON with the stage-1 vs stage-2 table, the targets (2-core CPU under 10 minutes; region
top-1 >= 5x chance after stage 2; stage 2 clearly above stage 1) and whether each was met, and the machine
it ran on, including the load average, since a shared machine slows a run down.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from

TIME_TARGET_SECONDS = 600
CHANCE_MULTIPLE_TARGET = 5.0
STAGE_GAP_TARGET = 0.10  # "clearly above": at least 10 points of region top-1


def machine() -> dict:
    """The harness's device description, plus the load average: a shared machine slows a run down."""
    import torch

    from benchmarks.harness import describe_device

    facts = describe_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    facts["load_average_1m_at_start"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return facts


@dataclass
class DefaultExperimentBench:
    output_file: Path = option(
        "JSON file to write", Path("benchmarks/results/default_experiment.json"), aliases=["out"]
    )
    run_dir: Path = option(
        "where the experiment writes its data, checkpoints and table", Path("runs/benchmark_default_experiment")
    )
    progress: bool = option("progress bars (--no_progress: none)", True)


def main(argv=None) -> dict:
    parser = CommandParser(
        prog="python -m benchmarks.default_experiment",
        description="Time the embedded default experiment and check its targets.",
    )
    parser.add_options(DefaultExperimentBench)
    args = options_from(parser.parse_args(argv), DefaultExperimentBench)

    from fgclip.train.default_experiment import DefaultExperiment, run_default_experiment

    facts = machine()
    started = time.time()
    result = run_default_experiment(DefaultExperiment(output_dir=str(args.run_dir), progress=args.progress))
    seconds = time.time() - started
    facts["load_average_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = {row["model"]: row for row in result["rows"]}
    stage1 = next(row for name, row in rows.items() if name.startswith("stage 1"))
    stage2 = next(row for name, row in rows.items() if name.startswith("stage 2"))
    report = {
        "benchmark": "embedded default experiment (scripts/pretrain_fgclip.py with no arguments)",
        "seconds": round(seconds, 1),
        "chance": result["chance"],
        "num_regions": stage2["num_regions"],
        "num_images": stage2["num_images"],
        "rows": [
            {
                key: row[key]
                for key in (
                    "model",
                    "region_top1",
                    "region_top1_over_chance",
                    "image_to_text_r1",
                    "text_to_image_r1",
                    "train_seconds",
                )
            }
            for row in result["rows"]
        ],
        "targets": {
            "seconds_under": TIME_TARGET_SECONDS,
            "stage2_region_top1_over_chance_at_least": CHANCE_MULTIPLE_TARGET,
            "stage2_minus_stage1_region_top1_at_least": STAGE_GAP_TARGET,
        },
        "met": {
            "time": seconds < TIME_TARGET_SECONDS,
            "stage2_vs_chance": stage2["region_top1_over_chance"] >= CHANCE_MULTIPLE_TARGET,
            "stage2_above_stage1": stage2["region_top1"] - stage1["region_top1"] >= STAGE_GAP_TARGET,
        },
        "machine": facts,
        "settings": result["settings"],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = args.output_file
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({"seconds": report["seconds"], "met": report["met"], "rows": report["rows"]}, indent=2))
    return report  # `python -m benchmarks.run default_experiment` turns it into a report


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
