"""The training loop of one stage: data, model and engine of the stage, then `fgclip.train.runner.Runner`.

The steps, resuming, logging, record accounting, pre-emption and checkpointing are the runner's (shared with
the Fashion-FINE finetuning); this module builds the stage's data, model and engine, checks the run folder
and a resumed run's identity, prints the start-up block and says how `final/` is exported. With
deterministic kernels (`fgclip.train.determinism`, the default on CPU) a resumed run reaches the
uninterrupted run's weights bitwise, wherever it was killed. A run stops early, always after saving a
checkpoint, when SIGTERM asks it to (`fgclip.train.preemption`) or when the data is shown to be bad
(`fgclip.data.accounting`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fgclip.data.accounting import RecordAccounting
from fgclip.data.collate import Batch, Collator
from fgclip.data.dataset import FineGrainedDataset
from fgclip.data.readers import LoadedRecord, expand_data_paths, open_sources
from fgclip.data.sampler import EpochBatchSampler
from fgclip.errors import UserError
from fgclip.folders import save_with_processors
from fgclip.losses import FGCLIPLoss
from fgclip.model_card import Provenance
from fgclip.train import checkpoint as ckpt
from fgclip.train.config import TrainConfig
from fgclip.train.distributed import (
    DistributedContext,
    setup_distributed,
)
from fgclip.train.engine import build_engine
from fgclip.train.model_init import build_model, describe_model_files
from fgclip.train.plan import Plan, format_plan, make_plan
from fgclip.train.recipes import choose_recipe, write_recipe_record
from fgclip.train.run_folder import RUN_FILES, unlock_run_folder
from fgclip.train.runner import (
    FINAL_DIR,
    ResumePoint,
    Runner,
    RunResult,
    RunSettings,
    TrainingError,
    TrainingTask,
    checkpoint_state,
    default_num_workers,
    find_resume,
    make_loader,
    prepare_run_folder,
    resolve_bf16,
    start_run,
    write_json,
)

CONFIG_FILE = "train_config.json"
__all__ = ["FINAL_DIR", "TrainResult", "TrainingError", "default_num_workers", "resolve_bf16", "train"]
LOSS_TERMS = ("long", "short", "region", "hard")
REGION_CHECK_RECORDS = 1000  # records read at start-up to see whether stage-2 data has any region


@dataclass
class TrainResult(RunResult):
    nonfinite_steps: int = 0
    bad_records: dict = field(default_factory=dict)


class StageTask(TrainingTask):
    """One FG-CLIP stage's step: `FGCLIPModel.forward` -> `FGCLIPLoss` with the stage's weights; `final/` is
    the fp32 model with the recipe that trained it."""

    def __init__(self, loss_fn: FGCLIPLoss, stage: int, recipe: str, output_dir: Path):
        self.loss_fn, self.stage, self.recipe, self.output_dir = loss_fn, stage, recipe, output_dir
        self.loss_terms = LOSS_TERMS if stage == 2 else LOSS_TERMS[:2]

    def compute_loss(self, engine, batch: Batch, micro_batch: int):
        return engine.forward(batch, self.loss_fn)

    def present_terms(self, batch: Batch) -> set[str]:
        """The loss terms this batch really has (an absent term is a zero kept in the graph, not a 0.0 loss)."""
        terms = {"long", "short"}
        if self.stage == 2 and batch.num_regions:
            terms.add("region")
            if batch.hard_mask is not None and bool((batch.hard_mask[:, 0] & batch.hard_mask[:, 1:].any(dim=1)).any()):
                terms.add("hard")
        return terms

    def describe_term(self, name: str) -> str:
        return {"region": "regions", "hard": "hard negatives"}.get(name, name)

    def export(self, engine, checkpoint_dir: Path, directory: Path) -> None:
        model = engine.fp32_model(checkpoint_dir)
        if self.stage == 1:
            # Stage 1 leaves the regional and hard-negative temperatures untrained; stage 2 starts them where a
            # new model starts them (at the global one, as FG-CLIP does): the model's one rule.
            with torch.no_grad():
                model.reset_fine_grained_temperatures()
        provenance = Provenance.trained(ckpt.read_trainer_state(checkpoint_dir), self.output_dir)
        save_with_processors(model, directory, provenance=provenance)
        write_recipe_record(directory, self.recipe, self.stage)


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
        raise UserError(
            f"stage 2 needs region data, but none of the {usable} records read from --data has regions "
            "(regions / FineHARD bbox_info); train stage 1 on it, or give records with boxes"
        )


def run_identity(config: TrainConfig, plan: Plan, source, engine_kind: str, world_size: int, bf16: bool) -> dict:
    """What makes a run the same run (checked when resuming): data, model, stage and optimisation values."""
    return {
        "layout": ckpt.run_layout(engine_kind, world_size, config.batch_size, config.grad_accum),
        "stage": config.stage,
        "model": describe_model_files(config.model.init),
        "data": [[str(path.resolve()), path.stat().st_size] for path in source.files],
        "images": str(Path(config.data.images).resolve()) if config.data.images else None,
        "num_samples": len(source),
        "seed": config.seed,
        "bf16": bf16,
        "optimisation": {
            name: plan.values[name]
            for name in ("lr", "weight_decay", "warmup_steps", "total_steps", "min_lr_ratio", "grad_clip")
        },
        "loss_weights": asdict(config.loss_weights),
        "data_rules": {
            "max_regions": config.data.max_regions,
            "num_hard_negatives": config.data.num_hard_negatives,
            "region_choice": config.data.region_choice,
            "finehard_short_prefix": config.data.finehard_short_prefix,
        },
    }


def _config_record(config: TrainConfig, plan: Plan, recipe: str, deterministic: bool, identity: dict) -> dict:
    record = json.loads(config.to_json())
    record.update(optimisation=plan.to_json(), recipe_used=recipe, deterministic=deterministic, identity=identity)
    return record


def _record_and_announce(
    config: TrainConfig,
    plan: Plan,
    recipe: str,
    deterministic: bool,
    identity: dict,
    source,
    engine_kind: str,
    world_size: int,
    resume: ResumePoint | None,
) -> None:
    """Write `train_config.json` (a fresh run; or a resume with `--resume_anyway`, keeping the history) and
    print the start-up block: every optimisation value and its source, then the data."""
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = output_dir / CONFIG_FILE
    record = _config_record(config, plan, recipe, deterministic, identity)
    overrides = resume.overrides if resume is not None else []
    if resume is None or not config_path.is_file():
        write_json(config_path, record)
    elif overrides:  # keep what the run was, add what changed and when
        earlier = json.loads(config_path.read_text())
        history = earlier.get("resumed_anyway", []) + [
            {"at_step": resume.step, "checkpoint": str(resume.checkpoint_dir), "differences": overrides}
        ]
        write_json(config_path, {**record, "resumed_anyway": history})
    reason = config.sources.get("recipe") if config.recipe else choose_recipe(config.model.init, config.stage).reason
    print(format_plan(plan, f"optimisation, stage {config.stage} (recipe {recipe}{': ' + reason if reason else ''}):"))
    duplicates = source.duplicate_records
    print(
        f"data: {len(source)} records from {len(source.files)} file(s)"
        + (f"; {duplicates} duplicate(s) of an earlier record (kept, counted in summary.json)" if duplicates else "")
        + f"; {'deterministic' if deterministic else 'non-deterministic'} kernels; {world_size} process(es), "
        f"{engine_kind} engine"
    )
    for difference in overrides:
        print(f"--resume_anyway: {difference}")


def train(
    config: TrainConfig, context: DistributedContext | None = None, launched_by_deepspeed: bool = False
) -> TrainResult:
    """Run one stage as configured; returns where the model went and how the loss moved."""
    started = time.time()
    context = context or setup_distributed(config.force_deepspeed, launched_by_deepspeed)
    deterministic = start_run(context, config.deterministic, config.progress)
    output_dir = Path(config.output_dir)
    stage2 = config.stage == 2
    say = print if context.is_main else (lambda *args, **kwargs: None)
    # the output folder first: a bad --output_dir fails before the data (maybe millions of records) is indexed
    inputs = [
        *expand_data_paths(config.data.paths),
        None if config.model.init == "tiny" else config.model.init,
        config.data.images,
        config.deepspeed_config,
    ]
    prepare_run_folder(output_dir, inputs, bool(config.resume), config.overwrite_output_dir, context, RUN_FILES)
    source = open_sources(config.data.paths, images=config.data.images)
    if stage2:
        require_region_data(source, config.seed)

    recipe = config.recipe or choose_recipe(config.model.init, config.stage).name
    config, plan = make_plan(config, len(source), context.world_size)
    total_steps = plan.total_steps
    bf16 = resolve_bf16(config.bf16, context.device)
    identity = run_identity(
        config, plan, source, "deepspeed" if context.use_deepspeed else "plain", context.world_size, bf16
    )

    resume = find_resume(config.resume, output_dir, identity, config.resume_anyway, say)

    model = build_model(config.model, config.stage, config.seed)
    dataset = FineGrainedDataset(
        source,
        model.image_size,
        with_regions=stage2,
        max_regions=config.data.max_regions,
        num_hard_negatives=config.data.num_hard_negatives,
        region_choice=config.data.region_choice,
        finehard_short_prefix=config.data.finehard_short_prefix,
    )
    sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, context.rank, context.world_size)
    loader = make_loader(dataset, sampler, Collator(with_regions=stage2), config.data.num_workers, context, config.seed)
    engine = build_engine(
        model, config.optim, total_steps, context, config.batch_size, config.grad_accum, bf16, config.deepspeed_config
    )

    if context.is_main:
        _record_and_announce(
            config, plan, recipe, deterministic, identity, source, engine.kind, context.world_size, resume
        )
    settings = RunSettings.from_config(
        config,
        total_steps,
        bf16,
        deterministic,
        description=f"stage {config.stage}",
        optim=config.optim,
        started=started,
        summary={"duplicate_records": source.duplicate_records, "num_records": len(source)},
    )
    task = StageTask(FGCLIPLoss(config.loss_weights), config.stage, recipe, output_dir)
    state = checkpoint_state(config, identity, config.stage, len(source), total_steps)
    accounting = RecordAccounting(config.data.max_bad_fraction)
    outcome = Runner(engine, loader, sampler, task, accounting, context, output_dir, state, settings).run(resume)
    unlock_run_folder(output_dir)  # the run is over: another process may train here now
    if outcome.stopped_early:
        return TrainResult.of(output_dir, outcome, nonfinite_steps=outcome.nonfinite_steps)
    summary = outcome.summary
    result = TrainResult.of(
        output_dir,
        outcome,
        nonfinite_steps=outcome.nonfinite_steps,
        bad_records={
            key: summary[key]
            for key in (
                "bad_records",
                "seen_records",
                "bad_fraction",
                "bad_by_reason",
                "bad_examples",
                "duplicate_records",
            )
        },
    )
    say(
        f"stage {config.stage} done: {outcome.steps} steps in {result.seconds:.0f}s, loss {outcome.first_loss} -> "
        f"{outcome.last_loss}; {summary['bad_records']} bad of {summary['seen_records']} records seen; "
        f"{summary['long_captions_truncated']} long captions and {summary['short_texts_truncated']} short texts cut "
        f"to length; {outcome.nonfinite_steps} non-finite steps; model in {outcome.final_dir}"
    )
    return result
