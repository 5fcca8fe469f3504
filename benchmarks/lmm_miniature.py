"""Benchmark: the FG-CLIP claim for LMMs, in miniature (issue 6).

    python scripts/pretrain_fgclip.py                      # trains the two towers (runs/default_experiment)
    python -m benchmarks.lmm_miniature [--stage1 DIR] [--stage2 DIR] [--output_dir DIR] [-- MINIATURE OPTIONS]

Two LLaVA models are built and finetuned the same way (`benchmarks.llava_miniature`: same synthetic scenes,
same tiny Llama, same stage A/B steps through scripts/finetune_llava.sh) and differ only in the vision tower:
the stage-1-only FG-CLIP (global losses) and the stage-2 FG-CLIP (+ regional and hard-negative losses) of
the embedded default. On the held-out questions it reports, for each: POPE-style yes/no F1 (accuracy,
precision, recall, yes-ratio beside it), attribute accuracy (colour, texture and size questions) and
localisation Acc@IoU>=0.5 ("where is ...?" answered with a box), with the question counts. The paper's
expectation is that the fine-grained tower is better on attributes and boxes; the figures are whatever
the run measures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from

CLAIM_COLUMNS = ("tower", "POPE F1", "POPE acc.", "yes-ratio", "attribute acc.", "loc. Acc@0.5", "all")


def claim_rows(encoders: dict) -> list[dict]:
    """One row per tower with the three figures of the claim (and the counts they rest on)."""
    rows = []
    for label, result in encoders.items():
        counts = result["questions_per_kind"]
        rows.append(
            {
                "tower": label,
                "pope_f1": result["pope"]["f1"],
                "pope_accuracy": result["pope"]["accuracy"],
                "pope_yes_ratio": result["pope"]["yes_ratio"],
                "attribute_accuracy": result["attribute_accuracy"],
                "localisation_acc50": result["localisation_acc50"],
                "accuracy": result["accuracy"],
                "yes_no_questions": counts.get("yes_no", 0),
                "attribute_questions": sum(counts.get(kind, 0) for kind in ("colour", "texture", "size")),
                "where_questions": counts.get("where", 0),
            }
        )
    return rows


def claim_table(rows: list[dict], chance: dict) -> str:
    lines = ["| " + " | ".join(CLAIM_COLUMNS) + " |", "|" + "---|" * len(CLAIM_COLUMNS)]
    for row in rows:
        lines.append(
            f"| {row['tower']} | {row['pope_f1']:.3f} | {row['pope_accuracy']:.3f} | {row['pope_yes_ratio']:.2f} | "
            f"{row['attribute_accuracy']:.3f} | {row['localisation_acc50']:.3f} | {row['accuracy']:.3f} |"
        )
    lines.append(
        f"| chance | - | 0.500 | - | {chance['attributes']:.3f} | {chance['where']:.3f} | {chance['all']:.3f} |"
    )
    first = rows[0]
    lines.append("")
    lines.append(
        f"Held-out questions: {first['yes_no_questions']} yes/no, {first['attribute_questions']} attribute, "
        f"{first['where_questions']} where. Localisation chance: always answering the mean training box."
    )
    return "\n".join(lines) + "\n"


def _chance(result: dict) -> dict:
    per_kind, counts = result["chance_per_kind"], result["questions_per_kind"]
    attribute_kinds = [kind for kind in ("colour", "texture", "size") if kind in counts]
    total = sum(counts[kind] for kind in attribute_kinds)
    return {
        "attributes": sum(per_kind[k] * counts[k] for k in attribute_kinds) / total if total else 0.0,
        "where": per_kind.get("where", 0.0),
        "all": result["chance"],
    }


@dataclass
class MiniatureBenchOptions:
    stage1: Path = option(
        "the stage-1-only FG-CLIP folder (default: the embedded default experiment's)",
        Path("runs/default_experiment/stage1/final"),
    )
    stage2: Path = option(
        "the stage-2 FG-CLIP folder (default: the embedded default experiment's)",
        Path("runs/default_experiment/stage2/final"),
    )
    output_dir: Path = option(
        "the miniature's run folder (data, models, answers)", Path("runs/lmm_miniature"), aliases=["out"]
    )
    json: Path = option("the benchmark's JSON", Path("benchmarks/results/lmm_miniature.json"))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = CommandParser(
        prog="python -m benchmarks.lmm_miniature",
        description=__doc__,
        epilog="Options it does not know (or all after `--`) go to benchmarks.llava_miniature.",
    )
    parser.add_options(MiniatureBenchOptions)
    namespace, miniature_args = parser.parse_known_args(argv)
    args = options_from(namespace, MiniatureBenchOptions)
    if miniature_args[:1] == ["--"]:
        miniature_args = miniature_args[1:]
    for folder in (args.stage1, args.stage2):
        if not (folder / "config.json").is_file():
            parser.error(
                f"no FG-CLIP folder at {folder}: run `python scripts/pretrain_fgclip.py` first or pass "
                "--stage1/--stage2"
            )

    import torch

    from benchmarks.harness import describe_device
    from benchmarks.llava_miniature.run import MiniatureOptions, build_parser
    from benchmarks.llava_miniature.run import run as run_miniature

    miniature = options_from(
        build_parser().parse_args(
            [
                "--output_dir",
                str(args.output_dir),
                "--vision",
                str(args.stage1),
                str(args.stage2),
                "--label",
                "stage 1 tower",
                "stage 2 tower",
                *miniature_args,
            ]
        ),
        MiniatureOptions,
    )
    options = asdict(miniature)
    started = time.time()
    result = run_miniature(miniature)
    encoders = result["encoders"]
    rows = claim_rows(encoders)
    chance = _chance(next(iter(encoders.values())))
    table = claim_table(rows, chance)
    print(table)
    report = {
        "benchmark": "LLaVA miniature, stage-1 vs stage-2 FG-CLIP tower",
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "chance": chance,
        "table": table,
        "towers": {"stage 1 tower": str(args.stage1), "stage 2 tower": str(args.stage2)},
        "miniature": options,
        "machine": {
            **describe_device(torch.device("cpu")),
            "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.output_dir / "claim.md").write_text(table)
    return report


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
