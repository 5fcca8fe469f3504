"""The training loop of one stage: data -> engine steps -> logs, checkpoints, `final/`.

Resuming restores the engine (weights, optimizer, scheduler), the data position (epoch and batch of a
seeded sampler), every rank's RNG states and record counts; with deterministic kernels
(`fgclip.train.determinism`, the default on CPU) a resumed run reaches the uninterrupted run's weights
bitwise, wherever it was killed. A run stops early, always after saving a checkpoint, when SIGTERM asks it
to (`fgclip.train.preemption`) or when the data is shown to be bad (`fgclip.data.accounting`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fgclip.data.accounting import RecordAccounting, RecordTotals, should_stop
from fgclip.data.collate import Batch, Collator
from fgclip.data.dataset import DataError, FineGrainedDataset
from fgclip.data.readers import LoadedRecord, expand_data_paths, open_sources
from fgclip.data.sampler import EpochBatchSampler
from fgclip.losses import FGCLIPLoss
from fgclip.folders import save_with_processors
from fgclip.model_card import Provenance
from fgclip.train import checkpoint as ckpt
from fgclip.train.config import TrainConfig
from fgclip.train.determinism import configure_determinism
from fgclip.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    available_cores,
    barrier,
    gather_objects,
    setup_distributed,
)
from fgclip.train.engine import build_engine
from fgclip.train.model_init import build_model, describe_model_files
from fgclip.train.plan import Plan, format_plan, make_plan
from fgclip.train.preemption import Terminated, TerminationRequest, ignore_termination_in_worker
from fgclip.train.recipes import choose_recipe, write_recipe_record
from fgclip.train.reporting import RunReporter
from fgclip.train.run_folder import SUMMARY_FILE, check_run_folder, remove_run_files

FINAL_DIR = "final"
CONFIG_FILE = "train_config.json"
LOSS_TERMS = ("long", "short", "region", "hard")
REGION_CHECK_RECORDS = 1000  # records read at start-up to see whether stage-2 data has any region


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
    """Loss sums between two log lines; each term is averaged over the micro-batches that had it."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.count, self.loss, self.samples, self.started = 0, 0.0, 0, time.time()
        self.terms = {name: [0.0, 0] for name in LOSS_TERMS}

    def add(self, loss: float, terms: dict[str, float], samples: int) -> None:
        self.count += 1
        self.loss += loss
        self.samples += samples
        for name, value in terms.items():
            self.terms[name][0] += value
            self.terms[name][1] += 1

    def vector(self) -> list[float]:
        return [self.loss, float(self.count)] + [float(v) for name in LOSS_TERMS for v in self.terms[name]]


def present_terms(batch: Batch, stage: int) -> set[str]:
    """The loss terms this batch really has (an absent term is a zero kept in the graph, not a 0.0 loss)."""
    terms = {"long", "short"}
    if stage == 2 and batch.num_regions:
        terms.add("region")
        if batch.hard_mask is not None and bool((batch.hard_mask[:, 0] & batch.hard_mask[:, 1:].any(dim=1)).any()):
            terms.add("hard")
    return terms


def require_region_data(source, seed: int, limit: int = REGION_CHECK_RECORDS) -> None:
    """Stage 2 on data without regions would silently train stage 1: stop with one line when none of up to
    `limit` records spread over the data (all of a smaller set) has a region."""
    count = len(source)
    indices = np.arange(count) if count <= limit else np.random.default_rng(seed).choice(count, limit, replace=False)
    usable = with_regions = 0
    for index in indices:
        loaded = source.load(int(index))
        if isinstance(loaded, LoadedRecord):
            usable += 1
            with_regions += bool(loaded.record.regions)
            if with_regions:
                return
    if usable:
        raise DataError(f"stage 2 needs region data, but none of the {usable} records read from --data has regions "
                        "(regions / FineHARD bbox_info); train stage 1 on it, or give records with boxes")


def run_identity(config: TrainConfig, plan: Plan, source, engine_kind: str, world_size: int, bf16: bool) -> dict:
    """What makes a run the same run (checked when resuming): data, model, stage and optimisation values."""
    return {
        "layout": {"engine": engine_kind, "world_size": world_size, "batch_size": config.batch_size,
                   "grad_accum": config.grad_accum},
        "stage": config.stage,
        "model": describe_model_files(config.model.init),
        "data": [[str(path.resolve()), path.stat().st_size] for path in source.files],
        "images": str(Path(config.data.images).resolve()) if config.data.images else None,
        "num_samples": len(source),
        "seed": config.seed,
        "bf16": bf16,
        "optimisation": {name: plan.values[name] for name in ("lr", "weight_decay", "warmup_steps", "total_steps",
                                                                 "min_lr_ratio", "grad_clip")},
        "loss_weights": asdict(config.loss_weights),
        "data_rules": {"max_regions": config.data.max_regions, "num_hard_negatives": config.data.num_hard_negatives,
                       "region_choice": config.data.region_choice,
                       "finehard_short_prefix": config.data.finehard_short_prefix},
    }


def _write_json(path: Path, value: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    temporary.replace(path)


def _config_record(config: TrainConfig, plan: Plan, recipe: str, deterministic: bool, identity: dict) -> dict:
    record = json.loads(config.to_json())
    record.update(optimisation=plan.to_json(), recipe_used=recipe, deterministic=deterministic, identity=identity)
    return record


def _record_and_announce(config: TrainConfig, plan: Plan, recipe: str, deterministic: bool, identity: dict, source,
                         engine_kind: str, world_size: int, checkpoint_dir: Path | None, step: int,
                         overrides: list[str]) -> None:
    """Write `train_config.json` (a fresh run; or a resume with `--resume_anyway`, keeping the history) and
    print the start-up block: every optimisation value and its source, then the data."""
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = output_dir / CONFIG_FILE
    record = _config_record(config, plan, recipe, deterministic, identity)
    if checkpoint_dir is None or not config_path.is_file():
        _write_json(config_path, record)
    elif overrides:  # keep what the run was, add what changed and when
        earlier = json.loads(config_path.read_text())
        history = earlier.get("resumed_anyway", []) + [{"at_step": step, "checkpoint": str(checkpoint_dir),
                                                         "differences": overrides}]
        _write_json(config_path, {**record, "resumed_anyway": history})
    reason = config.sources.get("recipe") if config.recipe else choose_recipe(config.model.init, config.stage).reason
    print(format_plan(plan, f"optimisation, stage {config.stage} (recipe {recipe}{': ' + reason if reason else ''}):"))
    duplicates = source.duplicate_records
    print(f"data: {len(source)} records from {len(source.files)} file(s)"
          + (f"; {duplicates} duplicate(s) of an earlier record (kept, counted in summary.json)" if duplicates else "")
          + f"; {'deterministic' if deterministic else 'non-deterministic'} kernels; {world_size} process(es), "
          f"{engine_kind} engine")
    for difference in overrides:
        print(f"--resume_anyway: {difference}")


def train(config: TrainConfig, context: DistributedContext | None = None, launched_by_deepspeed: bool = False) -> TrainResult:
    """Run one stage as configured; returns where the model went and how the loss moved."""
    started = time.time()
    context = context or setup_distributed(config.force_deepspeed, launched_by_deepspeed)
    deterministic = configure_determinism(context.device, config.deterministic)
    output_dir = Path(config.output_dir)
    stage2 = config.stage == 2
    say = print if context.is_main else (lambda *args, **kwargs: None)
    if not config.progress:  # also transformers' own bars (loading and writing weights)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    # the output folder first: a bad --output_dir fails before the data (maybe millions of records) is indexed
    inputs = [*expand_data_paths(config.data.paths), None if config.model.init == "tiny" else config.model.init,
              config.data.images, config.deepspeed_config]
    replaced = check_run_folder(output_dir, inputs, resume=bool(config.resume), overwrite=config.overwrite_output_dir)
    barrier()
    if context.is_main and replaced:
        remove_run_files(replaced)
        say(f"--overwrite_output_dir: removed the earlier run's {', '.join(p.name for p in replaced)} from {output_dir}")
    barrier()
    source = open_sources(config.data.paths, images=config.data.images)
    if stage2:
        require_region_data(source, config.seed)

    recipe = config.recipe or choose_recipe(config.model.init, config.stage).name
    config, plan = make_plan(config, len(source), context.world_size)
    total_steps = plan.total_steps
    bf16 = resolve_bf16(config.bf16, context.device)
    identity = run_identity(config, plan, source, "deepspeed" if context.use_deepspeed else "plain",
                            context.world_size, bf16)

    checkpoint_dir, overrides = None, []
    if config.resume:
        checkpoint_dir = ckpt.resolve_resume(config.resume, output_dir)
        if checkpoint_dir is None:
            say(f"--resume {config.resume}: no checkpoint in {ckpt.checkpoint_root(output_dir)} yet; starting from scratch")
        else:
            overrides = ckpt.check_compatible(ckpt.read_trainer_state(checkpoint_dir), {"identity": identity},
                                              config.resume_anyway)

    model = build_model(config.model, config.stage, config.seed)
    dataset = FineGrainedDataset(source, model.image_size, with_regions=stage2, max_regions=config.data.max_regions,
                                 num_hard_negatives=config.data.num_hard_negatives,
                                 region_choice=config.data.region_choice,
                                 finehard_short_prefix=config.data.finehard_short_prefix)
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, context.rank, context.world_size)
    workers = config.data.num_workers if config.data.num_workers is not None else default_num_workers(context.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(with_regions=stage2),
                        num_workers=workers, pin_memory=context.device.type == "cuda",
                        worker_init_fn=ignore_termination_in_worker if workers else None,
                        # its own generator: starting an epoch's iterator must not draw from the global RNG
                        generator=torch.Generator().manual_seed(config.seed + context.rank))
    engine = build_engine(model, config.optim, total_steps, context, config.batch_size, config.grad_accum, bf16,
                          config.deepspeed_config)
    loss_fn = FGCLIPLoss(config.loss_weights)
    accounting = RecordAccounting(config.data.max_bad_fraction)

    step, epoch, batch_in_epoch, nonfinite = 0, 0, 0, 0
    if checkpoint_dir is not None:
        saved = engine.load(checkpoint_dir)
        if overrides:
            engine.apply_optimisation(config.optim)
        step, epoch, batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        nonfinite = saved.get("nonfinite_steps", 0)
        rank_state = ckpt.load_rank_state(checkpoint_dir, context.rank)
        if "records" in rank_state:
            accounting.load_state_dict(rank_state["records"])
        ckpt.set_rng_state(rank_state["rng"])
    else:
        torch.manual_seed(config.seed + context.rank)  # per-rank streams; the weights are already made

    if context.is_main:
        _record_and_announce(config, plan, recipe, deterministic, identity, source, engine.kind, context.world_size,
                             checkpoint_dir, step, overrides)
    reporter = RunReporter(output_dir, total_steps, step, context.is_main, config.report_to, config.progress,
                           description=f"stage {config.stage}")
    if context.is_main and checkpoint_dir is not None:
        reporter.message(f"resumed from {checkpoint_dir} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    run_facts = {**identity["layout"], "stage": config.stage, "seed": config.seed, "num_samples": len(source),
                 "total_steps": total_steps}  # flat, as the model card reads them

    def save(at_step: int) -> Path:
        state = {**run_facts, "identity": identity, "step": at_step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "nonfinite_steps": nonfinite, "config": json.loads(config.to_json())}
        return ckpt.save_checkpoint(engine, output_dir, at_step, state, {"records": accounting.state_dict()},
                                    context, keep=config.save_total_limit)

    def record_totals() -> RecordTotals:
        return RecordTotals.from_vector(all_reduce_sum(accounting.vector(), context.device))

    def bad_record_stop(totals: RecordTotals, whole_pass: bool) -> str | None:
        if not should_stop(totals.bad, totals.seen, config.data.max_bad_fraction, whole_pass, accounting.min_seen):
            return None
        examples = [item for rank_examples in gather_objects(accounting.examples) for item in rank_examples]
        return accounting.stop_message(totals, whole_pass, examples)

    def write_summary(status: str, final_dir: Path | None) -> dict:
        totals = record_totals()
        examples = [item for rank_examples in gather_objects(accounting.examples) for item in rank_examples]
        summary = {"status": status, "steps": step, "total_steps": total_steps,
                   "seconds": round(time.time() - started, 2), "first_logged_loss": first_loss,
                   "last_logged_loss": last_loss, "nonfinite_steps": nonfinite,
                   **accounting.summary(totals, examples[: accounting.keep_examples]),
                   "duplicate_records": source.duplicate_records, "num_records": len(source),
                   "engine": engine.kind, "world_size": context.world_size, "bf16": bf16,
                   "deterministic": deterministic, "final": str(final_dir) if final_dir else None}
        if context.is_main:
            _write_json(output_dir / SUMMARY_FILE, summary)
        return summary

    window, consecutive, last_saved = _Window(), 0, checkpoint_dir
    first_loss, last_loss = reporter.first_logged_loss, reporter.last_logged_loss
    pending_stop, stop_requested, warned_absent = None, False, set()
    micro_batches_pending = 0  # accumulated since the last optimizer step (stops and saves wait for 0)
    input_dtype = engine.input_dtype
    try:
        with TerminationRequest() as termination:
            while step < total_steps:
                sampler.set_epoch(epoch, batch_in_epoch)
                for batch in loader:
                    batch_in_epoch += 1
                    accounting.add_batch(batch)
                    present = present_terms(batch, config.stage)
                    batch = batch.to(context.device, input_dtype)
                    result = engine.forward(batch, loss_fn)
                    nonfinite_ranks, terminating_ranks = all_reduce_sum(
                        [float(not torch.isfinite(result.total.detach()).item()), float(termination.requested)],
                        context.device)
                    stop_requested = stop_requested or terminating_ranks > 0
                    if nonfinite_ranks > 0:
                        nonfinite, consecutive = nonfinite + 1, consecutive + 1
                        reporter.message(f"non-finite loss at step {step + 1}: batch skipped ({consecutive} in a row)")
                        if consecutive >= config.max_nonfinite_steps:
                            raise TrainingError(f"{consecutive} non-finite losses in a row (last at step {step + 1}); "
                                                "lower --lr, use fp32 (no --bf16) or check the data")
                        continue
                    consecutive = 0
                    engine.backward(result.total)
                    window.add(result.total.item(), {k: v.item() for k, v in result.terms.items() if k in present},
                               batch.num_images)
                    micro_batches_pending += 1
                    if not engine.step():
                        continue
                    micro_batches_pending = 0
                    step += 1
                    reporter.advance()
                    if step % config.log_every == 0 or step == total_steps:
                        last_loss, totals = _log(reporter, window, step, epoch, engine.lr, accounting, nonfinite,
                                                 context, config.stage, warned_absent)
                        first_loss = reporter.first_logged_loss if context.is_main else first_loss
                        pending_stop = pending_stop or bad_record_stop(totals, whole_pass=False)
                    if config.save_every and step % config.save_every == 0:
                        last_saved = save(step)
                    if pending_stop or stop_requested:
                        break
                    if config.stop_at_step is not None and step >= config.stop_at_step:
                        return TrainResult(output_dir, None, step, time.time() - started, first_loss, last_loss,
                                           nonfinite, {}, stopped_early=True)
                    if step >= total_steps:
                        break
                if pending_stop or stop_requested:
                    break
                if batch_in_epoch >= len(sampler):
                    epoch, batch_in_epoch = epoch + 1, 0
                    pending_stop = bad_record_stop(record_totals(), whole_pass=True)
                    if pending_stop and not micro_batches_pending:
                        break
            if not (pending_stop or stop_requested):
                pending_stop = bad_record_stop(record_totals(), whole_pass=False)
            if pending_stop or stop_requested:
                at = last_saved if last_saved is not None and last_saved.name == ckpt.tag_for(step) else save(step)
                if pending_stop:
                    write_summary("stopped: too many bad records", None)
                    stop = DataError(f"{pending_stop}; checkpoint of step {step} saved in {at} (--resume latest "
                                     "continues once the data is fixed or --max_bad_fraction raised)")
                else:
                    write_summary("stopped: SIGTERM", None)
                    stop = Terminated(f"stopped by SIGTERM after step {step} of {total_steps}: checkpoint saved in "
                                      f"{at}; continue with --resume latest")
                stop.every_rank = True  # every rank stops alike: the command line prints it once
                raise stop
            # a SIGTERM from here on is too late to matter: the run finishes
            final_checkpoint = last_saved if last_saved is not None and last_saved.name == ckpt.tag_for(step) else save(step)
            final_dir = _export_final(engine, final_checkpoint, output_dir, config.stage, context, recipe)
    finally:
        reporter.close()
    summary = write_summary("finished", final_dir)
    result = TrainResult(output_dir, final_dir, step, time.time() - started, first_loss, last_loss, nonfinite,
                         {key: summary[key] for key in ("bad_records", "seen_records", "bad_fraction", "bad_by_reason",
                                                        "bad_examples", "duplicate_records")})
    say(f"stage {config.stage} done: {step} steps in {result.seconds:.0f}s, loss {first_loss} -> {last_loss}; "
        f"{summary['bad_records']} bad of {summary['seen_records']} records seen; "
        f"{summary['long_captions_truncated']} long captions and {summary['short_texts_truncated']} short texts cut "
        f"to length; {nonfinite} non-finite steps; model in {final_dir}")
    return result


def _log(reporter: RunReporter, window: _Window, step: int, epoch: int, lr: float, accounting: RecordAccounting,
         nonfinite: int, context: DistributedContext, stage: int, warned_absent: set) -> tuple[float, RecordTotals]:
    """Average the window over ranks, write it, start a new window; returns the mean loss and record totals."""
    window_values = window.vector()
    sums = all_reduce_sum(window_values + accounting.vector(), context.device)
    totals = RecordTotals.from_vector(sums[len(window_values):])
    count = max(sums[1], 1.0)
    terms = {}
    for index, name in enumerate(LOSS_TERMS):
        total, term_count = sums[2 + 2 * index], sums[3 + 2 * index]
        if name in ("region", "hard") and stage == 1:
            continue
        terms[f"loss_{name}"] = total / term_count if term_count else None  # absent, not a perfect 0.0
        if not term_count and name in ("region", "hard") and name not in warned_absent:
            warned_absent.add(name)
            reporter.message(f"no batch of steps up to {step} had {'regions' if name == 'region' else 'hard negatives'}"
                             f": loss_{name} is absent there (logged as null)")
    elapsed = max(time.time() - window.started, 1e-9)
    metrics = {
        "step": step,
        "epoch": epoch,
        "loss": sums[0] / count,
        **terms,
        "lr": lr,
        "samples_per_s": window.samples * context.world_size / elapsed,
        "bad_records": totals.bad,
        "seen_records": totals.seen,
        "nonfinite_steps": nonfinite,
    }
    reporter.log(metrics)
    window.reset()
    return metrics["loss"], totals


def _export_final(engine, checkpoint_dir: Path, output_dir: Path, stage: int, context: DistributedContext,
                  recipe: str) -> Path:
    """Write `final/` (this project's `from_pretrained` format, fp32, with the recipe that trained it) on
    rank 0; written beside it and renamed into place, so `final/` is never half written."""
    final_dir = output_dir / FINAL_DIR
    if context.is_main:
        model = engine.fp32_model(checkpoint_dir)
        if stage == 1:
            # Stage 1 leaves the regional and hard-negative temperatures untrained; stage 2 starts them at
            # the global one, as FG-CLIP does.
            with torch.no_grad():
                model.logit_scale_region.copy_(model.logit_scale)
                model.logit_scale_hard.copy_(model.logit_scale)
        partial = output_dir / (FINAL_DIR + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        provenance = Provenance.trained(ckpt.read_trainer_state(checkpoint_dir), output_dir)
        save_with_processors(model, partial, provenance=provenance)
        write_recipe_record(partial, recipe, stage)
        old = output_dir / (FINAL_DIR + ".replaced")
        if final_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            final_dir.rename(old)
        partial.rename(final_dir)
        shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final_dir
