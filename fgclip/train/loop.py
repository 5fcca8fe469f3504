"""The training loop of one stage: data -> engine steps -> logs, checkpoints, `final/`.

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
from fgclip.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    any_rank,
    available_cores,
    barrier,
    setup_distributed,
)
from fgclip.train.engine import build_engine
from fgclip.train.model_init import build_model
from fgclip.train.reporting import RunReporter

FINAL_DIR = "final"


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. repeated non-finite losses); the message says why."""


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


class _Window:
    """Loss sums between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.count, self.loss, self.terms, self.samples, self.started = 0, 0.0, {}, 0, time.time()

    def add(self, loss: float, terms: dict[str, float], samples: int) -> None:
        self.count += 1
        self.loss += loss
        self.samples += samples
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value


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
    loss_fn = FGCLIPLoss(config.loss_weights)
    counter = BadRecordCounter(config.data.max_bad_fraction, min_seen=min(200, len(dataset)))
    run_facts = {"engine": engine.kind, "world_size": context.world_size, "batch_size": config.batch_size,
                 "grad_accum": config.grad_accum, "stage": config.stage, "seed": config.seed,
                 "num_samples": len(dataset), "total_steps": total_steps}

    step, epoch, batch_in_epoch, nonfinite = 0, 0, 0, 0
    if config.resume:
        checkpoint_dir = ckpt.resolve_resume(config.resume, output_dir)
        ckpt.check_compatible(ckpt.read_trainer_state(checkpoint_dir), run_facts)
        saved = engine.load(checkpoint_dir)
        step, epoch, batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        nonfinite = saved.get("nonfinite_steps", 0)
        rank_state = ckpt.load_rank_state(checkpoint_dir, context.rank)
        counter.load_state_dict(rank_state["bad_records"])
        ckpt.set_rng_state(rank_state["rng"])
    else:
        torch.manual_seed(config.seed + context.rank)  # per-rank streams; the weights are already made

    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(config.to_json() + "\n")
    reporter = RunReporter(output_dir, total_steps, step, context.is_main, config.report_to, config.progress,
                           description=f"stage {config.stage}")
    if context.is_main and config.resume:
        reporter.message(f"resumed from {checkpoint_dir} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    def save(at_step: int) -> Path:
        state = {**run_facts, "step": at_step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "nonfinite_steps": nonfinite, "config": json.loads(config.to_json())}
        return ckpt.save_checkpoint(engine, output_dir, at_step, state, {"bad_records": counter.state_dict()},
                                    context, keep=config.save_total_limit)

    def check_bad_records(final: bool = False) -> None:
        good, bad = all_reduce_sum([counter.good, counter.bad], context.device)
        counter.check(int(good), int(bad), final=final)

    window, first_loss, last_loss, consecutive, last_saved = _Window(), None, None, 0, None
    input_dtype = engine.input_dtype
    try:
        while step < total_steps:
            sampler.set_epoch(epoch, batch_in_epoch)
            for batch in loader:
                batch_in_epoch += 1
                counter.add(batch.num_images, batch.skipped)
                batch = batch.to(context.device, input_dtype)
                result = engine.forward(batch, loss_fn)
                if any_rank(not torch.isfinite(result.total.detach()).item(), context.device):
                    nonfinite, consecutive = nonfinite + 1, consecutive + 1
                    reporter.message(f"non-finite loss at step {step + 1}: batch skipped ({consecutive} in a row)")
                    if consecutive >= config.max_nonfinite_steps:
                        raise TrainingError(f"{consecutive} non-finite losses in a row (last at step {step + 1}); "
                                            "lower --lr, use fp32 (no --bf16) or check the data")
                    continue
                consecutive = 0
                engine.backward(result.total)
                window.add(result.total.item(), {k: v.item() for k, v in result.terms.items()}, batch.num_images)
                if not engine.step():
                    continue
                step += 1
                reporter.advance()
                if step % config.log_every == 0 or step == total_steps:
                    last_loss = _log(reporter, window, step, epoch, engine.lr, counter, nonfinite, context)
                    first_loss = reporter.first_logged_loss if context.is_main else first_loss
                    check_bad_records()
                if config.save_every and step % config.save_every == 0:
                    last_saved = save(step)
                if config.stop_at_step is not None and step >= config.stop_at_step:
                    return TrainResult(output_dir, None, step, time.time() - started, first_loss, last_loss,
                                       nonfinite, counter.summary(), stopped_early=True)
                if step >= total_steps:
                    break
            if batch_in_epoch >= len(sampler):
                epoch, batch_in_epoch = epoch + 1, 0
                check_bad_records(final=True)
        check_bad_records(final=True)
        final_checkpoint = last_saved if last_saved is not None and last_saved.name == ckpt.tag_for(step) else save(step)
        final_dir = _export_final(engine, final_checkpoint, output_dir, config.stage, context)
    finally:
        reporter.close()
    result = TrainResult(output_dir, final_dir, step, time.time() - started, first_loss, last_loss, nonfinite,
                         counter.summary())
    if context.is_main:
        summary = {"steps": step, "seconds": round(result.seconds, 2), "first_logged_loss": first_loss,
                   "last_logged_loss": last_loss, "nonfinite_steps": nonfinite, **counter.summary(),
                   "engine": engine.kind, "world_size": context.world_size, "bf16": bf16}
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"stage {config.stage} done: {step} steps in {result.seconds:.0f}s, loss {first_loss} -> {last_loss}; "
              f"{counter.bad} bad records skipped of {counter.good + counter.bad} seen (rank 0); "
              f"{nonfinite} non-finite steps; model in {final_dir}")
    return result


def _log(reporter: RunReporter, window: _Window, step: int, epoch: int, lr: float, counter: BadRecordCounter,
         nonfinite: int, context: DistributedContext) -> float:
    """Average the window over ranks, write it, start a new window; returns the mean loss."""
    names = sorted(window.terms)
    sums = all_reduce_sum([window.loss, float(window.count)] + [window.terms[n] for n in names]
                          + [float(counter.good), float(counter.bad)], context.device)
    count = max(sums[1], 1.0)
    elapsed = max(time.time() - window.started, 1e-9)
    metrics = {
        "step": step,
        "epoch": epoch,
        "loss": sums[0] / count,
        **{f"loss_{name}": sums[2 + i] / count for i, name in enumerate(names)},
        "lr": lr,
        "samples_per_s": window.samples * context.world_size / elapsed,
        "bad_records": int(sums[-1]),
        "seen_records": int(sums[-2] + sums[-1]),
        "nonfinite_steps": nonfinite,
    }
    reporter.log(metrics)
    window.reset()
    return metrics["loss"]


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
