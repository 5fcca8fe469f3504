"""Fashion-FINE finetuning on the project's trainer machinery (`fgclip.train`): DeepSpeed ZeRO-2 past one
process, atomic resumable checkpoints, metrics.jsonl / TensorBoard, bad-record accounting, progress bar.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fgclip.data.dataset import BadRecordCounter, DataError
from fgclip.data.sampler import EpochBatchSampler, sample_seed
from fgclip.errors import UserError
from fgclip.fashion.data import Products, Triplets, read_products, read_triplets
from fgclip.fashion.dataset import FashionCollator, ProductDataset, TripletDataset
from fgclip.fashion.losses import CompositionLossInputs, FashionFINELoss, FashionLossConfig, RetrievalLossInputs
from fgclip.fashion.modeling import FashionFINEModel, model_type_of
from fgclip.fashion.validate import validate_composition, validate_retrieval
from fgclip.model.conversion import CheckpointError, save_with_processors
from fgclip.model_card import Provenance
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.train import checkpoint as ckpt
from fgclip.train.config import OptimConfig
from fgclip.train.distributed import DistributedContext, all_reduce_sum, barrier, setup_distributed
from fgclip.train.engine import build_engine
from fgclip.train.loop import FINAL_DIR, default_num_workers, resolve_bf16
from fgclip.train.runner import Runner, RunSettings, TrainingError, TrainingTask
from fgclip.train.step import MAX_LOGIT_SCALE

TASKS = ("retrieval", "tgir")
BEST_DIR = "best"
OWNED_OUTPUTS = ("metrics.jsonl", "validation.jsonl", "checkpoints", FINAL_DIR, BEST_DIR, "best.json", "summary.json",
                 "finetune_config.json", "tensorboard")
_NEGATIVES_STREAM = 0x5EED  # sample_seed(seed, stream, micro-batch): the hard-negative draws of a batch


class FinetuneUsageError(UserError, ValueError):
    """Options that do not fit the data or the model (one-line message, exit code 2)."""


@dataclass(frozen=True)
class FashionRecipe:
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    min_lr_ratio: float
    matching_weight: float
    focal_gamma: float
    focal_alpha: float


# Fashion-FINE's configs: retrieval lr 1e-5 (min 1e-6), wd 0.02, 64 per GPU, 30 epochs, focal + matching;
# text-guided lr 3e-5 (min 1e-7), wd 0.3, 16 per GPU, 10 epochs, plain contrastive. Warm-up: one epoch.
RECIPES = {
    "retrieval": FashionRecipe(1e-5, 0.02, 64, 30, 0.1, 1.0, 2.0, 0.25),
    "tgir": FashionRecipe(3e-5, 0.3, 16, 10, 1e-7 / 3e-5, 0.0, 0.0, 1.0),
}


@dataclass
class FashionModelSettings:
    """Set when the Fashion-FINE parts are created on towers; a Fashion-FINE `--init` keeps its own."""

    local_pooling: bool | None = None  # None: on (or the folder's)
    image_local_ratio: float | None = None
    text_local_ratio: float | None = None
    fusion_layers: int | None = None
    gradient_checkpointing: bool = False


@dataclass
class FinetuneConfig:
    task: str = "retrieval"
    init: str = ""
    data: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_fraction: float = 0.0
    images: str | None = None
    output_dir: str = "runs/fashion"
    model: FashionModelSettings = field(default_factory=FashionModelSettings)
    loss: FashionLossConfig = field(default_factory=FashionLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(warmup_steps=-1))  # warm-up < 0: one epoch
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    grad_accum: int = 1
    eval_every: int = 0  # optimizer steps between validations; 0: once per epoch
    bf16: bool | None = None
    seed: int = 42
    num_workers: int | None = None
    max_bad_fraction: float = 0.01
    deepspeed_config: str | None = None
    force_deepspeed: bool = False
    resume: str | None = None
    save_every: int = 0
    save_total_limit: int = 2
    log_every: int = 10
    report_to: str = "none"
    max_nonfinite_steps: int = 10
    stop_at_step: int | None = None
    progress: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


@dataclass
class FinetuneResult:
    output_dir: Path
    final_dir: Path | None
    best_dir: Path | None
    steps: int
    seconds: float
    first_loss: float | None = None
    last_loss: float | None = None
    best: dict | None = None
    stopped_early: bool = False


# ---------------------------------------------------------------------------------------------- data
def check_read_skips(counts, total_key: str, max_bad_fraction: float, what: str) -> None:
    """Items skipped while reading count against `--max_bad_fraction` as bad records found later do."""
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    total = counts[total_key]
    if total and skipped / total > max_bad_fraction:
        reasons = ", ".join(f"{k.removeprefix('skipped_')} {v}" for k, v in counts.items() if k.startswith("skipped_") and v)
        raise DataError(f"{skipped} of {total} {what} cannot be used ({skipped / total:.1%} > --max_bad_fraction "
                        f"{max_bad_fraction:.1%}): {reasons}")


def split_products(products: Products, fraction: float, seed: int) -> tuple[Products, Products]:
    """Hold out `fraction` of the PRODUCTS (all their images) as a validation split."""
    names = list(products.by_product())
    held = set(random.Random(seed).sample(names, max(1, round(fraction * len(names)))))
    if len(held) >= len(names):
        raise FinetuneUsageError(f"--val_fraction {fraction} leaves no training product of {len(names)}")
    train = Products([r for r in products.rows if r.product not in held], products.counts, products.formats)
    val = Products([r for r in products.rows if r.product in held], Counter(), products.formats)
    return train, val


def split_triplets(triplets: Triplets, fraction: float, seed: int) -> tuple[Triplets, Triplets]:
    """Hold out `fraction` of the triplets (by target image, so no target is in both) as a validation split."""
    targets = sorted({t.target_name for t in triplets.items})
    held = set(random.Random(seed).sample(targets, max(1, round(fraction * len(targets)))))
    if len(held) >= len(targets):
        raise FinetuneUsageError(f"--val_fraction {fraction} leaves no training triplet")
    train = Triplets([t for t in triplets.items if t.target_name not in held], triplets.counts)
    val = Triplets([t for t in triplets.items if t.target_name in held])
    galleries: dict = {}
    for item in val.items:
        galleries.setdefault(item.category, {}).update({item.reference_name: item.reference,
                                                        item.target_name: item.target})
    val.galleries = galleries
    return train, val


def load_task_data(config: FinetuneConfig):
    """(training data, validation data or None) of the task, skips checked against --max_bad_fraction."""
    if config.task == "retrieval":
        train = read_products(config.data, config.images)
        check_read_skips(train.counts, "rows", config.max_bad_fraction, "product images")
        val = read_products(config.val, config.images) if config.val else None
        if val is None and config.val_fraction:
            train, val = split_products(train, config.val_fraction, config.seed)
        return train, val
    train = read_triplets(config.data, config.images)
    check_read_skips(train.counts, "triplets", config.max_bad_fraction, "triplets")
    val = read_triplets(config.val, config.images) if config.val else None
    if val is None and config.val_fraction:
        train, val = split_triplets(train, config.val_fraction, config.seed)
    return train, val


# ---------------------------------------------------------------------------------------------- model
def build_fashion_model(config: FinetuneConfig) -> FashionFINEModel:
    """The model to finetune, in fp32: a Fashion-FINE folder as saved, or new Fashion-FINE parts on the towers
    of an FG-CLIP / CLIP / official FG-CLIP folder. Parts no loss of the task uses are frozen."""
    path = Path(config.init)
    if not path.is_dir():
        raise CheckpointError(f"--init {config.init}: no such folder (give an FG-CLIP, CLIP, official FG-CLIP or "
                              "Fashion-FINE model folder)")
    settings = config.model
    overrides = {k: v for k, v in (("local_pooling", settings.local_pooling),
                                   ("image_local_ratio", settings.image_local_ratio),
                                   ("text_local_ratio", settings.text_local_ratio),
                                   ("fusion_layers", settings.fusion_layers)) if v is not None}
    try:
        if model_type_of(path) == "fashion_fine":
            model = FashionFINEModel.from_pretrained(str(path), dtype=torch.float32)
            changed = [k for k, v in overrides.items() if getattr(model.config, k) != v]
            if changed:
                raise FinetuneUsageError(f"--init {path} is a Fashion-FINE folder with its own {changed[0]} "
                                         f"({getattr(model.config, changed[0])}); drop --{changed[0]} or start from towers")
        else:
            model = FashionFINEModel.from_towers(path, **overrides)
    except (CheckpointError, FinetuneUsageError):
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointError(f"--init {config.init} cannot be loaded: {type(error).__name__}: {message}") from error
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
    if settings.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the name in later transformers 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def save_model(engine, checkpoint: Path, directory: Path, tokenizer: FGCLIPTokenizer, config: FinetuneConfig) -> None:
    """A `from_pretrained` folder (fp32, tokenizer, image processor, model card) from a run's checkpoint."""
    provenance = Provenance.trained(ckpt.read_trainer_state(checkpoint), config.output_dir)
    provenance.source = config.init
    save_with_processors(engine.fp32_model(checkpoint), directory, tokenizer=tokenizer, provenance=provenance)


# ---------------------------------------------------------------------------------------------- the task
class FashionTask(TrainingTask):
    """A Fashion-FINE step, and validation + best-model selection after steps."""

    def __init__(self, config: FinetuneConfig, engine, context: DistributedContext, validation, total_steps: int,
                 eval_every: int, tokenizer: FGCLIPTokenizer, output_dir: Path):
        self.config, self.engine, self.context = config, engine, context
        self.loss_fn = FashionFINELoss(config.loss)
        self.validation, self.total_steps, self.eval_every = validation, total_steps, eval_every
        self.tokenizer, self.output_dir = tokenizer, output_dir
        self.best: dict | None = None

    def compute_loss(self, engine, batch, micro_batch: int):
        step_seed = sample_seed(self.config.seed, _NEGATIVES_STREAM, micro_batch)
        module = engine.module
        task = self.config.task

        def forward(model):
            output = model(**batch.model_inputs())
            scale = output.logit_scale.float().clamp(max=MAX_LOGIT_SCALE)
            if task == "tgir":
                return self.loss_fn(CompositionLossInputs(output.query_embeds.float(), output.image_embeds.float(),
                                                          output.reference_embeds.float(), scale, batch.groups,
                                                          batch.reference_ids))
            inputs = RetrievalLossInputs(output.image_embeds.float(), output.text_embeds.float(), scale, batch.groups,
                                         output.image_tokens, output.text_tokens, output.text_mask, step_seed)
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
            checkpoint = runner.save()
            if self.context.is_main:
                save_model(self.engine, checkpoint, self.output_dir / BEST_DIR, self.tokenizer, self.config)
                (self.output_dir / "best.json").write_text(json.dumps(self.best, indent=2) + "\n")
            barrier()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")


# ---------------------------------------------------------------------------------------------- the run
def finetune(config: FinetuneConfig, context: DistributedContext | None = None,
             launched_by_deepspeed: bool = False) -> FinetuneResult:
    """Run one finetuning as configured."""
    started = time.time()
    if config.task not in TASKS:
        raise FinetuneUsageError(f"task must be one of {TASKS}, got {config.task!r}")
    context = context or setup_distributed(config.force_deepspeed, launched_by_deepspeed)
    output_dir = Path(config.output_dir)
    train_data, val_data = load_task_data(config)
    model = build_fashion_model(config)
    tokenizer = FGCLIPTokenizer.from_pretrained(config.init)
    dataset_class = ProductDataset if config.task == "retrieval" else TripletDataset
    dataset = dataset_class(train_data, model.image_size)
    try:
        sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, context.rank, context.world_size)
    except ValueError as error:
        raise FinetuneUsageError(f"{error} (lower --batch_size)") from error
    workers = config.num_workers if config.num_workers is not None else default_num_workers(context.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=FashionCollator(tokenizer), num_workers=workers,
                        pin_memory=context.device.type == "cuda",
                        generator=torch.Generator().manual_seed(config.seed + context.rank))
    per_epoch = len(sampler) // config.grad_accum
    total_steps = config.max_steps or config.epochs * per_epoch
    if total_steps < 1:
        raise TrainingError(f"{len(sampler)} batches per epoch are fewer than --grad_accum {config.grad_accum}")
    eval_every = config.eval_every or max(per_epoch, 1)
    optim = config.optim if config.optim.warmup_steps >= 0 else replace(config.optim, warmup_steps=per_epoch)
    bf16 = resolve_bf16(config.bf16, context.device)
    engine = build_engine(model, optim, total_steps, context, config.batch_size, config.grad_accum, bf16,
                          config.deepspeed_config)
    counter = BadRecordCounter(config.max_bad_fraction, min_seen=min(200, len(dataset)))
    run_facts = {"engine": engine.kind, "world_size": context.world_size, "batch_size": config.batch_size,
                 "grad_accum": config.grad_accum, "stage": f"fashion-{config.task}", "seed": config.seed,
                 "num_samples": len(dataset), "total_steps": total_steps}
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "finetune_config.json").write_text(config.to_json() + "\n")
    task = FashionTask(config, engine, context, val_data, total_steps, eval_every, tokenizer, output_dir)
    settings = RunSettings(total_steps=total_steps, seed=config.seed, log_every=config.log_every,
                           save_every=config.save_every, save_total_limit=config.save_total_limit,
                           max_nonfinite_steps=config.max_nonfinite_steps, stop_at_step=config.stop_at_step,
                           resume=config.resume, report_to=config.report_to, progress=config.progress,
                           description=f"fashion {config.task}")
    outcome = Runner(engine, loader, sampler, task, counter, context, output_dir, run_facts, settings,
                     config.to_json()).run()
    best_dir = output_dir / BEST_DIR if (output_dir / BEST_DIR).is_dir() else None
    if outcome.stopped_early:
        return FinetuneResult(output_dir, None, best_dir, outcome.steps, time.time() - started, outcome.first_loss,
                              outcome.last_loss, task.best, stopped_early=True)
    final_dir = output_dir / FINAL_DIR
    if context.is_main:
        save_model(engine, outcome.final_checkpoint, final_dir, tokenizer, config)
    barrier()
    result = FinetuneResult(output_dir, final_dir, best_dir, outcome.steps, time.time() - started, outcome.first_loss,
                            outcome.last_loss, task.best)
    if context.is_main:
        read_counts = dict(train_data.counts)
        summary = {"task": config.task, "steps": outcome.steps, "seconds": round(result.seconds, 2),
                   "first_logged_loss": outcome.first_loss, "last_logged_loss": outcome.last_loss,
                   "nonfinite_steps": outcome.nonfinite_steps, "skipped_at_read": read_counts, **counter.summary(),
                   "best": task.best, "validation": "none" if val_data is None else (
                       "--val files" if config.val else f"{config.val_fraction:.1%} of the training data held out"),
                   "engine": engine.kind, "world_size": context.world_size, "bf16": bf16}
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        best_note = f"; best (validation) at step {task.best['step']} in {best_dir}" if task.best else ""
        print(f"fashion {config.task} done: {outcome.steps} steps in {result.seconds:.0f}s, loss {outcome.first_loss} -> "
              f"{outcome.last_loss}; {counter.bad} bad records skipped while training, "
              f"{sum(v for k, v in read_counts.items() if k.startswith('skipped_'))} while reading; model in "
              f"{final_dir}{best_note}")
    return result
