"""The training loop of one stage: data -> engine steps -> logs, checkpoints, `final/`.

The steps, resuming, logging and checkpointing are `fgclip.train.runner.Runner`'s (shared with the
Fashion-FINE finetuning); this module builds the stage's data, model and engine, and exports `final/`.
Resuming restores the engine (weights, optimizer, scheduler), the data position (epoch and batch of a
seeded sampler) and every rank's RNG states, so a resumed run continues the same sample order and
reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fgclip.data.collate import Collator
from fgclip.data.dataset import BadRecordCounter, FineGrainedDataset
from fgclip.data.readers import open_sources
from fgclip.data.sampler import EpochBatchSampler
from fgclip.losses import FGCLIPLoss
from fgclip.model.conversion import save_with_processors
from fgclip.model_card import Provenance
from fgclip.train import checkpoint as ckpt
from fgclip.train.config import TrainConfig
from fgclip.train.distributed import DistributedContext, available_cores, barrier, setup_distributed
from fgclip.train.engine import build_engine
from fgclip.train.model_init import build_model
from fgclip.train.runner import Runner, RunSettings, TrainingError, TrainingTask

FINAL_DIR = "final"
__all__ = ["FINAL_DIR", "TrainResult", "TrainingError", "default_num_workers", "resolve_bf16", "train"]


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    steps: int
    seconds: float
    first_loss: float | None = None
    last_loss: float | None = None
    nonfinite_steps: int = 0
    bad_records: dict = field(default_factory=dict)
    stopped_early: bool = False


def default_num_workers(world_size: int) -> int:
    """Loader workers per rank: none on small machines, where they would only compete for cores."""
    per_rank = available_cores() // max(world_size, 1)
    return 0 if per_rank <= 2 else min(8, per_rank - 1)


def resolve_bf16(bf16: bool | None, device: torch.device) -> bool:
    if bf16 is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bf16


class StageTask(TrainingTask):
    """One FG-CLIP stage's step: `FGCLIPModel.forward` -> `FGCLIPLoss` with the stage's weights."""

    def __init__(self, loss_fn: FGCLIPLoss):
        self.loss_fn = loss_fn

    def compute_loss(self, engine, batch, micro_batch: int):
        return engine.forward(batch, self.loss_fn)


def train(config: TrainConfig, context: DistributedContext | None = None, launched_by_deepspeed: bool = False) -> TrainResult:
    """Run one stage as configured; returns where the model went and how the loss moved."""
    started = time.time()
    context = context or setup_distributed(config.force_deepspeed, launched_by_deepspeed)
    output_dir = Path(config.output_dir)
    stage2 = config.stage == 2

    source = open_sources(config.data.paths)
    model = build_model(config.model, config.stage, config.seed)
    dataset = FineGrainedDataset(source, model.image_size, with_regions=stage2, max_regions=config.data.max_regions,
                                 num_hard_negatives=config.data.num_hard_negatives)
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, context.rank, context.world_size)
    workers = config.data.num_workers if config.data.num_workers is not None else default_num_workers(context.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(with_regions=stage2),
                        num_workers=workers, pin_memory=context.device.type == "cuda",
                        # its own generator: starting an epoch's iterator must not draw from the global RNG
                        generator=torch.Generator().manual_seed(config.seed + context.rank))
    micro_per_epoch = len(sampler)
    total_steps = config.max_steps or config.epochs * micro_per_epoch // config.grad_accum
    if total_steps < 1:
        raise TrainingError(f"{micro_per_epoch} batches per epoch are fewer than --grad_accum {config.grad_accum}")

    bf16 = resolve_bf16(config.bf16, context.device)
    engine = build_engine(model, config.optim, total_steps, context, config.batch_size, config.grad_accum, bf16,
                          config.deepspeed_config)
    counter = BadRecordCounter(config.data.max_bad_fraction, min_seen=min(200, len(dataset)))
    run_facts = {"engine": engine.kind, "world_size": context.world_size, "batch_size": config.batch_size,
                 "grad_accum": config.grad_accum, "stage": config.stage, "seed": config.seed,
                 "num_samples": len(dataset), "total_steps": total_steps}
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(config.to_json() + "\n")
    settings = RunSettings(total_steps=total_steps, seed=config.seed, log_every=config.log_every,
                           save_every=config.save_every, save_total_limit=config.save_total_limit,
                           max_nonfinite_steps=config.max_nonfinite_steps, stop_at_step=config.stop_at_step,
                           resume=config.resume, report_to=config.report_to, progress=config.progress,
                           description=f"stage {config.stage}")
    runner = Runner(engine, loader, sampler, StageTask(FGCLIPLoss(config.loss_weights)), counter, context,
                    output_dir, run_facts, settings, config.to_json())
    outcome = runner.run()
    if outcome.stopped_early:
        return TrainResult(output_dir, None, outcome.steps, time.time() - started, outcome.first_loss,
                           outcome.last_loss, outcome.nonfinite_steps, counter.summary(), stopped_early=True)
    final_dir = _export_final(engine, outcome.final_checkpoint, output_dir, config.stage, context)
    result = TrainResult(output_dir, final_dir, outcome.steps, time.time() - started, outcome.first_loss,
                         outcome.last_loss, outcome.nonfinite_steps, counter.summary())
    if context.is_main:
        summary = {"steps": outcome.steps, "seconds": round(result.seconds, 2), "first_logged_loss": result.first_loss,
                   "last_logged_loss": result.last_loss, "nonfinite_steps": result.nonfinite_steps, **counter.summary(),
                   "engine": engine.kind, "world_size": context.world_size, "bf16": bf16}
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"stage {config.stage} done: {outcome.steps} steps in {result.seconds:.0f}s, loss {result.first_loss} -> "
              f"{result.last_loss}; {counter.bad} bad records skipped of {counter.good + counter.bad} seen (rank 0); "
              f"{result.nonfinite_steps} non-finite steps; model in {final_dir}")
    return result


def _export_final(engine, checkpoint_dir: Path, output_dir: Path, stage: int, context: DistributedContext) -> Path:
    """Write `final/` (this project's `from_pretrained` format, fp32) on rank 0."""
    final_dir = output_dir / FINAL_DIR
    if context.is_main:
        model = engine.fp32_model(checkpoint_dir)
        if stage == 1:
            # Stage 1 leaves the regional and hard-negative temperatures untrained; stage 2 starts them at
            # the global one, as FG-CLIP does.
            with torch.no_grad():
                model.logit_scale_region.copy_(model.logit_scale)
                model.logit_scale_hard.copy_(model.logit_scale)
        provenance = Provenance.trained(ckpt.read_trainer_state(checkpoint_dir), output_dir)
        save_with_processors(model, final_dir, provenance=provenance)
    barrier()
    return final_dir
