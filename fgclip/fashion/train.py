"""Fashion-FINE finetuning on the project's trainer machinery (`fgclip.train.runner`, shared with pretraining):
DeepSpeed ZeRO-2 past one process, atomic resumable checkpoints checked against the run's identity,
bitwise reproducible runs on CPU, pre-emption by SIGTERM, metrics.jsonl / TensorBoard, bad-record
accounting with the evidence stop rule, progress bar.

Two tasks:
* `retrieval`: cross-modal retrieval on FashionGen-style products; focal contrastive + image-text matching
  with sampled hard negatives (Fashion-FINE's `retrieval.sh`).
* `tgir`: text-guided image retrieval on FashionIQ-style triplets; the composed query (text tokens fused
  with the reference image's tokens by cross-attention, as Fashion-FINE's `tgir.sh` trains) against the
  target image, contrastive (Fashion-FINE's text-guided finetuning has no matching loss).

Model selection uses the validation split only (`--val` files or `--val_fraction` of the training
products): every `eval_every` steps the validation score is computed and, when it improves, the model is
written to `OUTPUT/best/` (`best.json` says which step). `final/` is the last step's model. No option
reads a test split.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from fgclip.data.accounting import RecordAccounting
from fgclip.data.sampler import EpochBatchSampler, sample_seed
from fgclip.errors import UserError
from fgclip.fashion.config import TASKS, FinetuneConfig
from fgclip.fashion.data import Products, Triplets, read_products, read_triplets
from fgclip.fashion.dataset import (
    FashionBatch,
    FashionCollator,
    ProductDataset,
    TripletDataset,
)
from fgclip.fashion.losses import (
    CompositionLossInputs,
    FashionFINELoss,
    RetrievalLossInputs,
)
from fgclip.fashion.modeling import FashionFINEModel, model_type_of
from fgclip.fashion.validate import validate_composition, validate_retrieval
from fgclip.folders import save_with_processors
from fgclip.model_card import Provenance
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.train import checkpoint as ckpt
from fgclip.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    setup_distributed,
)
from fgclip.train.engine import build_engine
from fgclip.train.model_init import describe_model_files
from fgclip.train.run_folder import RUN_FILES as PRETRAINING_RUN_FILES
from fgclip.train.run_folder import unlock_run_folder
from fgclip.train.runner import (
    Runner,
    RunResult,
    RunSettings,
    TrainingError,
    TrainingTask,
    checkpoint_state,
    find_resume,
    make_loader,
    prepare_run_folder,
    resolve_bf16,
    start_run,
    write_json,
)
from fgclip.train.step import MAX_LOGIT_SCALE

BEST_DIR = "best"
CONFIG_FILE = "finetune_config.json"
RUN_FILES = (
    *(name for name in PRETRAINING_RUN_FILES if name != "train_config.json"),
    CONFIG_FILE,
    "validation.jsonl",
    BEST_DIR,
    "best.json",
)
_NEGATIVES_STREAM = 0x5EED  # sample_seed(seed, stream, micro-batch): the hard-negative draws of a batch


@dataclass
class FinetuneResult(RunResult):
    best_dir: Path | None = None  # the best validation step's model (`best/`); None without validation
    best: dict | None = None  # best.json: that step and its validation scores


# ---------------------------------------------------------------------------------------------- data
def check_read_skips(counts, total_key: str, max_bad_fraction: float, what: str) -> None:
    """Items skipped while reading count against `--max_bad_fraction` as bad records found later do."""
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    total = counts[total_key]
    if total and skipped / total > max_bad_fraction:
        reasons = ", ".join(
            f"{k.removeprefix('skipped_')} {v}" for k, v in counts.items() if k.startswith("skipped_") and v
        )
        raise UserError(
            f"{skipped} of {total} {what} cannot be used ({skipped / total:.1%} > --max_bad_fraction "
            f"{max_bad_fraction:.1%}): {reasons}"
        )


def split_products(products: Products, fraction: float, seed: int) -> tuple[Products, Products]:
    """Hold out `fraction` of the PRODUCTS (all their images) as a validation split."""
    names = list(products.by_product())
    held = set(random.Random(seed).sample(names, max(1, round(fraction * len(names)))))
    if len(held) >= len(names):
        raise UserError(f"--val_fraction {fraction} leaves no training product of {len(names)}")
    train = Products([r for r in products.rows if r.product not in held], products.counts, products.formats)
    val = Products([r for r in products.rows if r.product in held], Counter(), products.formats)
    return train, val


def split_triplets(triplets: Triplets, fraction: float, seed: int) -> tuple[Triplets, Triplets]:
    """Hold out `fraction` of the triplets (by target image, so no target is in both) as a validation split."""
    targets = sorted({t.target_name for t in triplets.items})
    held = set(random.Random(seed).sample(targets, max(1, round(fraction * len(targets)))))
    if len(held) >= len(targets):
        raise UserError(f"--val_fraction {fraction} leaves no training triplet")
    train = Triplets([t for t in triplets.items if t.target_name not in held], triplets.counts)
    val = Triplets([t for t in triplets.items if t.target_name in held])
    galleries: dict = {}
    for item in val.items:
        galleries.setdefault(item.category, {}).update(
            {item.reference_name: item.reference, item.target_name: item.target}
        )
    val.galleries = galleries
    return train, val


def load_task_data(config: FinetuneConfig):
    """(training data, validation data or None) of the task, skips checked against --max_bad_fraction."""
    if config.task == "retrieval":
        read, split, total_key, what = read_products, split_products, "rows", "product images"
    else:
        read, split, total_key, what = read_triplets, split_triplets, "triplets", "triplets"
    train = read(config.data, config.images)
    check_read_skips(train.counts, total_key, config.max_bad_fraction, what)
    val = read(config.val, config.images) if config.val else None
    if val is None and config.val_fraction:
        train, val = split(train, config.val_fraction, config.seed)
    return train, val


# ---------------------------------------------------------------------------------------------- model
def build_fashion_model(config: FinetuneConfig) -> FashionFINEModel:
    """The model to finetune, in fp32: a Fashion-FINE folder as saved, or new Fashion-FINE parts on the towers
    of an FG-CLIP / CLIP / official FG-CLIP folder. Parts no loss of the task uses are frozen."""
    path = Path(config.init)
    if not path.is_dir():
        raise UserError(
            f"--init {config.init}: no such folder (give an FG-CLIP, CLIP, official FG-CLIP or "
            "Fashion-FINE model folder)"
        )
    overrides = {
        name: getattr(config, name)
        for name in ("local_pooling", "image_local_ratio", "text_local_ratio", "fusion_layers")
        if getattr(config, name) is not None
    }
    try:
        if model_type_of(path) == "fashion_fine":
            model = FashionFINEModel.from_pretrained(str(path), dtype=torch.float32)
            changed = [k for k, v in overrides.items() if getattr(model.config, k) != v]
            if changed:
                raise UserError(
                    f"--init {path} is a Fashion-FINE folder with its own {changed[0]} "
                    f"({getattr(model.config, changed[0])}); drop --{changed[0]} or start from towers"
                )
        else:
            torch.manual_seed(config.seed)  # the new parts' initial weights: the same seed, the same model
            model = FashionFINEModel.from_towers(path, **overrides)
    except UserError:  # already one line
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"--init {config.init} cannot be loaded: {type(error).__name__}: {message}") from error
    model = model.float().train()
    if config.task == "tgir":
        model.config.query_composition = "fusion"
    unused = ["long_text_positions", "long_text_projection", "logit_scale_region", "logit_scale_hard"]
    if config.task == "tgir":
        unused += ["matching_norm", "matching_head"]
    elif not config.loss.matching_weight:
        unused += ["fusion", "matching_norm", "matching_head"]
    for name, parameter in model.named_parameters():
        if name.split(".")[0] in unused:
            parameter.requires_grad_(False)
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the name in later transformers 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


# ---------------------------------------------------------------------------------------------- the task
class FashionTask(TrainingTask):
    """A Fashion-FINE step, and validation + best-model selection after steps."""

    def __init__(
        self,
        config: FinetuneConfig,
        engine,
        context: DistributedContext,
        validation,
        total_steps: int,
        eval_every: int,
        tokenizer: FGCLIPTokenizer,
        output_dir: Path,
    ):
        self.config, self.engine, self.context = config, engine, context
        self.loss_fn = FashionFINELoss(config.loss)
        self.validation, self.total_steps, self.eval_every = validation, total_steps, eval_every
        self.tokenizer, self.output_dir = tokenizer, output_dir
        self.best: dict | None = None
        if config.task == "tgir":
            self.loss_terms = ("composition",)
        else:
            self.loss_terms = ("contrastive", "matching") if config.matching_weight else ("contrastive",)

    def account(self, accounting: RecordAccounting, batch: FashionBatch) -> None:
        accounting.add(batch.seen, batch.bad)

    def export(self, engine, checkpoint_dir: Path, directory: Path) -> None:
        """A `from_pretrained` folder (fp32, tokenizer, image processor, model card) from a run's checkpoint."""
        provenance = Provenance.trained(ckpt.read_trainer_state(checkpoint_dir), self.config.output_dir)
        provenance.source = self.config.init
        save_with_processors(
            engine.fp32_model(checkpoint_dir), directory, tokenizer=self.tokenizer, provenance=provenance
        )

    def summary(self) -> dict:
        return {"best": self.best}

    def compute_loss(self, engine, batch, micro_batch: int):
        step_seed = sample_seed(self.config.seed, _NEGATIVES_STREAM, micro_batch)
        module = engine.module
        task = self.config.task

        def forward(model):
            output = model(**batch.model_inputs())
            scale = output.logit_scale.float().clamp(max=MAX_LOGIT_SCALE)
            if task == "tgir":
                return self.loss_fn(
                    CompositionLossInputs(
                        output.query_embeds.float(),
                        output.image_embeds.float(),
                        output.reference_embeds.float(),
                        scale,
                        batch.groups,
                        batch.reference_ids,
                    )
                )
            inputs = RetrievalLossInputs(
                output.image_embeds.float(),
                output.text_embeds.float(),
                scale,
                batch.groups,
                output.image_tokens,
                output.text_tokens,
                output.text_mask,
                step_seed,
            )
            return self.loss_fn(inputs, matcher=module.match_logits)

        return engine.run(forward)

    def after_step(self, step: int, runner: Runner) -> None:
        if self.validation is None or (step % self.eval_every and step != self.total_steps):
            return
        metrics = {}
        if self.context.is_main:
            module = self.engine.module
            module.eval()
            validate = validate_retrieval if self.config.task == "retrieval" else validate_composition
            metrics = validate(module, self.validation, self.tokenizer)
            module.train()
            runner.log_validation({"step": step, **metrics})
            runner.message(f"validation at step {step}: score {metrics['score']:.4f}")
        improved = self.context.is_main and (self.best is None or metrics["score"] > self.best["score"])
        if all_reduce_sum([1.0 if improved else 0.0], self.context.device)[0] > 0:
            if self.context.is_main:
                self.best = {"step": step, **metrics}  # before the checkpoint, which keeps it for a resume
            runner.export(runner.save(), self.output_dir / BEST_DIR)
            if self.context.is_main:
                write_json(self.output_dir / "best.json", self.best)
            barrier()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")


# ---------------------------------------------------------------------------------------------- the run
def run_identity(
    config: FinetuneConfig, train_data, engine_kind: str, world_size: int, bf16: bool, total_steps: int, optim
) -> dict:
    """What makes a run the same run (checked when resuming): data, model, task and optimisation values."""
    return {
        "layout": ckpt.run_layout(engine_kind, world_size, config.batch_size, config.grad_accum),
        "task": config.task,
        "model": describe_model_files(config.init),
        "data": [[str(Path(path).resolve()), Path(path).stat().st_size] for path in config.data],
        "validation": {"val": [str(Path(path).resolve()) for path in config.val], "val_fraction": config.val_fraction},
        "images": str(Path(config.images).resolve()) if config.images else None,
        "num_samples": len(train_data),
        "seed": config.seed,
        "bf16": bf16,
        "optimisation": {
            "lr": optim.lr,
            "weight_decay": optim.weight_decay,
            "warmup_steps": optim.warmup_steps,
            "total_steps": total_steps,
            "min_lr_ratio": optim.min_lr_ratio,
            "grad_clip": optim.grad_clip,
        },
        "loss": {
            "contrastive_weight": config.contrastive_weight,
            "matching_weight": config.matching_weight,
            "focal_gamma": config.focal_gamma,
            "focal_alpha": config.focal_alpha,
        },
        "parts": {
            name: getattr(config, name)
            for name in ("local_pooling", "image_local_ratio", "text_local_ratio", "fusion_layers")
        },
    }


def finetune(
    config: FinetuneConfig, context: DistributedContext | None = None, launched_by_deepspeed: bool = False
) -> FinetuneResult:
    """Run one finetuning as configured (unset recipe values are the task's, `FinetuneConfig.resolved`)."""
    started = time.time()
    if config.task not in TASKS:
        raise UserError(f"task must be one of {TASKS}, got {config.task!r}")
    config = config.resolved()
    context = context or setup_distributed(config.force_deepspeed, launched_by_deepspeed)
    deterministic = start_run(context, config.deterministic, config.progress)
    output_dir = Path(config.output_dir)
    say = print if context.is_main else (lambda *args, **kwargs: None)
    prepare_run_folder(
        output_dir,
        [*config.data, *config.val, config.init, config.images, config.deepspeed_config],
        bool(config.resume),
        config.overwrite_output_dir,
        context,
        RUN_FILES,
    )
    train_data, val_data = load_task_data(config)
    dataset_class = ProductDataset if config.task == "retrieval" else TripletDataset
    model = build_fashion_model(config)
    dataset = dataset_class(train_data, model.image_size)
    try:
        sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, context.rank, context.world_size)
    except ValueError as error:
        raise UserError(f"{error} (lower --batch_size)") from error
    per_epoch = len(sampler) // config.grad_accum
    total_steps = config.max_steps or config.epochs * per_epoch
    if total_steps < 1:
        raise TrainingError(f"{len(sampler)} batches per epoch are fewer than --grad_accum {config.grad_accum}")
    optim = config.optim(max(per_epoch, 1))
    bf16 = resolve_bf16(config.bf16, context.device)
    identity = run_identity(
        config, dataset, "deepspeed" if context.use_deepspeed else "plain", context.world_size, bf16, total_steps, optim
    )
    resume = find_resume(config.resume, output_dir, identity, config.resume_anyway, say)

    tokenizer = FGCLIPTokenizer.from_pretrained(config.init)
    loader = make_loader(dataset, sampler, FashionCollator(tokenizer), config.num_workers, context, config.seed)
    engine = build_engine(
        model, optim, total_steps, context, config.batch_size, config.grad_accum, bf16, config.deepspeed_config
    )
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if resume is None or not (output_dir / CONFIG_FILE).is_file() or resume.overrides:
            write_json(
                output_dir / CONFIG_FILE,
                {**json.loads(config.to_json()), "identity": identity, "deterministic": deterministic},
            )
        say(
            f"fashion {config.task}: {len(dataset)} training {'products' if config.task == 'retrieval' else 'triplets'}"
            f", {total_steps} steps (lr {optim.lr:g}, batch {config.batch_size} x {context.world_size} process(es) x "
            f"{config.grad_accum}, warm-up {optim.warmup_steps}); "
            f"{'deterministic' if deterministic else 'non-deterministic'} kernels, {engine.kind} engine"
        )
        for difference in resume.overrides if resume else []:
            say(f"--resume_anyway: {difference}")
    eval_every = config.eval_every or max(per_epoch, 1)
    task = FashionTask(config, engine, context, val_data, total_steps, eval_every, tokenizer, output_dir)
    read_counts = dict(train_data.counts)
    validation = (
        "none"
        if val_data is None
        else ("--val files" if config.val else f"{config.val_fraction:.1%} of the training data held out")
    )
    settings = RunSettings.from_config(
        config,
        total_steps,
        bf16,
        deterministic,
        description=f"fashion {config.task}",
        optim=optim,
        started=started,
        summary={"task": config.task, "skipped_at_read": read_counts, "validation": validation},
    )
    state = checkpoint_state(config, identity, f"fashion-{config.task}", len(dataset), total_steps)
    accounting = RecordAccounting(config.max_bad_fraction)
    outcome = Runner(engine, loader, sampler, task, accounting, context, output_dir, state, settings).run(resume)
    unlock_run_folder(output_dir)  # the run is over: another process may train here now
    best_dir = output_dir / BEST_DIR if (output_dir / BEST_DIR).is_dir() else None
    result = FinetuneResult.of(output_dir, outcome, best_dir=best_dir, best=task.best)
    if not outcome.stopped_early:
        summary = outcome.summary
        best_note = f"; best (validation) at step {task.best['step']} in {best_dir}" if task.best else ""
        say(
            f"fashion {config.task} done: {outcome.steps} steps in {result.seconds:.0f}s, loss {outcome.first_loss} -> "
            f"{outcome.last_loss}; {summary['bad_records']} bad items skipped while training, "
            f"{sum(v for k, v in read_counts.items() if k.startswith('skipped_'))} while reading; model in "
            f"{outcome.final_dir}{best_note}"
        )
    return result
