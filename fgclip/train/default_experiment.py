"""The embedded default: what `python scripts/pretrain_fgclip.py` runs with neither --data nor --init.

1. Synthesise a fine-grained scene set (`fgclip.data.synthetic`) with a train and a held-out split.
2. Train a tiny FG-CLIP from scratch with stage 1 (global losses), then stage 2 from stage 1's `final/`
   (+ regional and hard-negative losses) on the train split.
3. Evaluate the untrained model, stage 1 and stage 2 on the held-out split (never used for any choice):
   FG-OVD-style region top-1 against 1 positive + 10 hard negatives, and long-caption R@1.
4. Print the table and write it to OUTPUT_DIR/default_experiment.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fgclip.data.synthetic import generate
from fgclip.model import FGCLIPModel
from fgclip.outputs import prepare_output_dir
from fgclip.train.config import TINY_RECIPES, DataConfig, ModelInit, OptimConfig, TinyModel, TrainConfig
from fgclip.train.distributed import DistributedContext, barrier, setup_distributed
from fgclip.train.evaluate import evaluate_heldout
from fgclip.train.loop import train


@dataclass
class DefaultExperiment:
    """The settings of the embedded default (tuned so that it learns on 2 CPU cores in minutes)."""

    output_dir: str = "runs/default_experiment"
    num_images: int = 2500
    heldout_fraction: float = 0.12
    seed: int = 42
    stage1_steps: int = 200
    stage2_steps: int = 500
    batch_size: int = 32
    num_workers: int | None = None
    bf16: bool | None = None
    deepspeed_config: str | None = None
    force_deepspeed: bool = False
    report_to: str = "none"
    deterministic: bool | None = None
    overwrite: bool = False  # write into an output folder that holds files the experiment did not write
    log_every: int = 25
    progress: bool = True
    tiny: TinyModel = field(default_factory=TinyModel)

    def stage_config(self, stage: int, init: str, data: Path) -> TrainConfig:
        recipe = TINY_RECIPES[stage]
        sources = {name: "embedded default (tiny recipe)" for name in ("lr", "weight_decay", "warmup_steps")}
        sources.update(
            {
                name: "embedded default"
                for name in ("batch_size", "max_steps", "grad_accum", "epochs", "min_lr_ratio", "grad_clip")
            }
        )
        sources["recipe"] = "the embedded default's tiny model"
        return TrainConfig(
            stage=stage,
            model=ModelInit(init=init, tiny=self.tiny),
            data=DataConfig(paths=[str(data)], num_workers=self.num_workers),
            optim=OptimConfig(lr=recipe.lr, weight_decay=recipe.weight_decay, warmup_steps=recipe.warmup_steps),
            output_dir=str(Path(self.output_dir) / f"stage{stage}"),
            max_steps=self.stage1_steps if stage == 1 else self.stage2_steps,
            batch_size=self.batch_size,
            bf16=self.bf16,
            seed=self.seed,
            deepspeed_config=self.deepspeed_config,
            force_deepspeed=self.force_deepspeed,
            log_every=self.log_every,
            report_to=self.report_to,
            progress=self.progress,
            deterministic=self.deterministic,
            overwrite_output_dir=True,  # the experiment's own folder: a re-run replaces the previous one
            recipe="tiny",
            sources=sources,
        )


OWNED = ("data", "stage1", "stage2", "default_experiment.json", "default_experiment.md")

COLUMNS = ("model", "region top-1", "x chance", "I->T R@1", "T->I R@1", "train s")


def format_table(rows: list[dict], chance: float, num_regions: int, num_images: int) -> str:
    lines = [
        f"Held-out split: {num_regions} regions (1 positive + 10 hard negatives each, chance {chance:.3f}), "
        f"{num_images} images for long-caption retrieval.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['region_top1']:.3f} | {row['region_top1_over_chance']:.2f} | "
            f"{row['image_to_text_r1']:.3f} | {row['text_to_image_r1']:.3f} | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run_default_experiment(
    experiment: DefaultExperiment, context: DistributedContext | None = None, launched_by_deepspeed: bool = False
) -> dict:
    """Run the whole experiment; returns (and on rank 0 writes) the table's numbers."""
    started = time.time()
    context = context or setup_distributed(experiment.force_deepspeed, launched_by_deepspeed)
    out = Path(experiment.output_dir)
    prepare_output_dir(
        out,
        owned=OWNED,
        overwrite=experiment.overwrite,
        overwrite_flag="--overwrite_output_dir",
        option="--output_dir",
        what="files that are not the embedded default's",
    )
    data_dir = out / "data"
    if context.is_main:
        generate(
            data_dir,
            experiment.num_images,
            experiment.seed,
            experiment.tiny.image_size,
            experiment.heldout_fraction,
            progress=experiment.progress,
        )
    barrier()
    synthesis_seconds = time.time() - started
    heldout = data_dir / "heldout.jsonl"
    rows = []

    def trained_row(name: str, trained) -> dict:
        """The table row of a trained stage: its final folder evaluated on the held-out set, its time and losses."""
        model = FGCLIPModel.from_pretrained(trained.final_dir).to(context.device)
        return {
            "model": name,
            **evaluate_heldout(model, [heldout]),
            "train_seconds": trained.seconds,
            "first_loss": trained.first_loss,
            "last_loss": trained.last_loss,
        }

    if context.is_main:
        config = experiment.tiny.to_config()
        import torch

        torch.manual_seed(experiment.seed)
        untrained = FGCLIPModel(config).to(context.device)
        rows.append({"model": "untrained", **evaluate_heldout(untrained, [heldout]), "train_seconds": 0.0})
        del untrained
    stage1 = train(experiment.stage_config(1, "tiny", data_dir / "train.jsonl"), context)
    if context.is_main:
        rows.append(trained_row("stage 1 (global)", stage1))
    barrier()
    stage2 = train(experiment.stage_config(2, str(stage1.final_dir), data_dir / "train.jsonl"), context)
    result = {}
    if context.is_main:
        rows.append(trained_row("stage 2 (+ region, hard neg.)", stage2))
        last = rows[-1]
        table = format_table(rows, last["chance"], last["num_regions"], last["num_images"])
        result = {
            "rows": rows,
            "chance": last["chance"],
            "stage2_region_top1_over_chance": last["region_top1_over_chance"],
            "stage2_minus_stage1_region_top1": rows[-1]["region_top1"] - rows[-2]["region_top1"],
            "synthesis_seconds": round(synthesis_seconds, 2),
            "total_seconds": round(time.time() - started, 2),
            "world_size": context.world_size,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "settings": asdict(experiment),
        }
        (out / "default_experiment.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "default_experiment.md").write_text(
            "# Embedded default experiment\n\n" + table + f"\nTotal time {result['total_seconds']:.0f} s.\n"
        )
        print("\n" + table + f"\nTotal time {result['total_seconds']:.0f} s; written to {out}/default_experiment.md")
    barrier()
    return result


def run_from_args(args: argparse.Namespace, launched_by_deepspeed: bool = False) -> dict:
    """The default experiment with the few options it takes (see `fgclip.train.cli`)."""
    experiment = DefaultExperiment()
    if args.output_dir is not None:
        experiment.output_dir = args.output_dir
    if args.seed is not None:
        experiment.seed = args.seed
    if args.synthetic_images is not None:
        experiment.num_images = args.synthetic_images
    if args.max_steps is not None:
        experiment.stage1_steps = experiment.stage2_steps = args.max_steps
    if args.log_every is not None:
        experiment.log_every = args.log_every
    experiment.num_workers = args.num_workers
    experiment.bf16 = args.bf16
    experiment.report_to = args.report_to or "none"
    experiment.deterministic = args.deterministic
    experiment.overwrite = bool(args.overwrite_output_dir)
    experiment.progress = args.progress is not False
    if args.deepspeed is not None:
        experiment.deepspeed_config, experiment.force_deepspeed = args.deepspeed, True
    return run_default_experiment(experiment, launched_by_deepspeed=launched_by_deepspeed)
