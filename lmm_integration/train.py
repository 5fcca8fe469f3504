"""Finetune a LLaVA model with an FG-CLIP tower: the LLaVA-1.5 recipe in two stages.

    stage A (projector pre-training): tower and LM frozen, projector trained (lr 1e-3)
    stage B (visual instruction tuning): projector + LM trained (lr 2e-5), tower frozen unless --unfreeze-vision

    python -m lmm_integration.train --stage A --model BUILT_DIR --data captions.json --output-dir runs/a
    deepspeed --module lmm_integration.train --stage B --model runs/a/final --data mix.json \\
        --output-dir runs/b --deepspeed scripts/zero2_llava.json

Uses the Hugging Face Trainer (with a DeepSpeed config when given; on a machine without a GPU it runs on
CPU with gloo). The final model is OUTPUT_DIR/final, loadable by stock `LlavaForConditionalGeneration` and
`AutoProcessor`; with --lora/--qlora the adapter is kept in OUTPUT_DIR/adapter and merged into `final`.
OUTPUT_DIR/metrics.jsonl has one JSON object per logged step, OUTPUT_DIR/data_report.json the skip counts,
OUTPUT_DIR/run_info.json how the run was executed (processes, ZeRO stage, global batch).

Runs are never mixed or lost: an OUTPUT_DIR holding a run is refused unless --resume (continue it: from its
latest checkpoint, or nothing to do when it has finished) or --overwrite-output-dir (start again) is given,
and --resume refuses a run made with other options or data (--resume-anyway overrides, and is recorded).
SIGTERM (how SLURM and Kubernetes stop a job) or Ctrl-C: the stage finishes its step, saves
OUTPUT_DIR/checkpoint-N, prints where, and exits with code 143; --resume continues from there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import (
    AutoProcessor,
    LlavaForConditionalGeneration,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir
from lmm_integration.data import (
    ASPECT_MODES,
    ConversationCollator,
    ConversationDataset,
    image_token_count,
)
from lmm_integration.lora import (
    PROJECTOR,
    LoraOptions,
    add_lora,
    merge_adapter,
    quantization_config,
)
from lmm_integration.preemption import (
    PREEMPTED_EXIT_CODE,
    GracefulStop,
    WorkerIgnoresStopSignals,
)

STAGE_LR = {"A": 1e-3, "B": 2e-5}
LORA_LR, LORA_PROJECTOR_LR = 2e-4, 2e-5
RUN_FILES = ("train_options.json", "metrics.jsonl", "data_report.json", "run_info.json", "final", "adapter", "runs")
# options that may change between a run and its resumption: they do not change what is trained
RESUMABLE_CHANGES = ("output_dir", "num_workers", "logging_steps", "save_steps", "report_to", "resume", "resume_anyway",
                     "overwrite_output_dir", "gradient_checkpointing", "deepspeed", "max_bad_fraction")



class Preempted(Exception):
    """The stage stopped on SIGTERM/SIGINT after saving `checkpoint`."""

    def __init__(self, checkpoint: Path, signal_name: str, step: int):
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.checkpoint, self.signal_name, self.step = checkpoint, signal_name, step


@dataclass
class TrainOptions:
    """Everything one run needs; saved to OUTPUT_DIR/train_options.json."""

    stage: str
    model: str
    data: str
    output_dir: str
    image_root: str | None = None
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    lr: float | None = None
    projector_lr: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    model_max_length: int = 2048
    image_aspect_ratio: str = "pad"
    unfreeze_vision: bool = False
    lora: bool = False
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    qlora: int | None = None
    gradient_checkpointing: bool = False
    bf16: bool = False
    deepspeed: str | None = None
    seed: int = 42
    save_steps: int = 0
    logging_steps: int = 10
    num_workers: int = 4
    max_bad_fraction: float = 0.5
    report_to: str = "none"
    resume: bool = False
    resume_anyway: bool = False
    overwrite_output_dir: bool = False

    def validate(self) -> None:
        if self.stage not in STAGE_LR:
            raise UserError("--stage must be A or B")
        if self.resume and self.overwrite_output_dir:
            raise UserError("give --resume (continue the run in --output-dir) or --overwrite-output-dir "
                                  "(start it again), not both")
        if self.qlora is not None:
            if self.qlora not in (4, 8):
                raise UserError("--qlora takes 4 or 8")
            self.lora = True  # QLoRA is LoRA on a quantised LM
        if self.lora and self.stage == "A":
            raise UserError("LoRA applies to stage B (stage A trains the projector only)")
        if self.image_aspect_ratio not in ASPECT_MODES:
            raise UserError(f"--image-aspect-ratio must be one of {ASPECT_MODES}")
        if not (Path(self.model) / "config.json").is_file():
            raise UserError(f"model folder not found or has no config.json: {self.model}")
        if not Path(self.data).is_file():
            raise UserError(f"data file not found: {self.data}")
        if self.deepspeed and not Path(self.deepspeed).is_file():
            raise UserError(f"DeepSpeed config not found: {self.deepspeed}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return LORA_LR if self.lora else STAGE_LR[self.stage]

    @property
    def projector_learning_rate(self) -> float:
        if self.projector_lr is not None:
            return self.projector_lr
        return LORA_PROJECTOR_LR if self.lora else self.learning_rate


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ---------------------------------------------------------------------- model
def load_model(options: TrainOptions) -> LlavaForConditionalGeneration:
    """The LLaVA model in the dtype training needs (quantised LM for QLoRA)."""
    compute_dtype = torch.bfloat16 if options.bf16 else torch.float32
    kwargs = {}
    if options.qlora:
        kwargs["quantization_config"] = quantization_config(options.qlora, compute_dtype)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"}
    # DeepSpeed keeps fp32 master weights itself; without it, weights stay fp32 and bf16 means autocast.
    dtype = torch.bfloat16 if options.bf16 and options.deepspeed and not options.qlora else torch.float32
    return LlavaForConditionalGeneration.from_pretrained(options.model, dtype=dtype, **kwargs)


def set_trainable(model: LlavaForConditionalGeneration, options: TrainOptions):
    """Freeze per stage; returns the model to train (a peft model with LoRA)."""
    model.requires_grad_(False)
    if options.lora:
        model = add_lora(model, LoraOptions(options.lora_r, options.lora_alpha, options.lora_dropout, options.qlora),
                         options.gradient_checkpointing)
    elif options.stage == "B":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    _inner(model).model.multi_modal_projector.requires_grad_(True)
    if options.unfreeze_vision:
        _inner(model).model.vision_tower.requires_grad_(True)
    return model


def _inner(model) -> LlavaForConditionalGeneration:
    """The LLaVA model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------- trainer
class LlavaTrainer(Trainer):
    """HF Trainer with a separate learning rate for the projector (LLaVA's `mm_projector_lr`)."""

    def __init__(self, *args, projector_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resume with the checkpoint's weights. transformers (5.x) resumes a full model with a plain
        `load_state_dict` of the weights file, but LLaVA's weights are saved under the renamed (4.x) keys that only
        `from_pretrained` maps back: every weight would be "missing" and the stage would go on from its starting
        weights with the checkpoint's optimizer. DeepSpeed and PEFT checkpoints load their own way (correctly)."""
        model = self.model if model is None else model
        full_weights = any((Path(resume_from_checkpoint) / name).is_file()
                           for name in ("model.safetensors", "model.safetensors.index.json"))
        if self.is_deepspeed_enabled or hasattr(model, "get_base_model") or not full_weights:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
        model.load_state_dict(saved.state_dict(), strict=True)
        return None

    def get_train_dataloader(self):
        loader = super().get_train_dataloader()
        torch_loader = getattr(loader, "base_dataloader", loader)  # accelerate wraps the torch DataLoader
        # see lmm_integration.preemption
        torch_loader.worker_init_fn = WorkerIgnoresStopSignals(torch_loader.worker_init_fn)
        return loader

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.projector_lr is None or self.projector_lr == self.args.learning_rate:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, parameter in opt_model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((PROJECTOR in name, name in decay), []).append(parameter)
        parameter_groups = [
            {"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0,
             **({"lr": self.projector_lr} if is_projector else {})}
            for (is_projector, decayed), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(parameter_groups, **optimizer_kwargs)
        return self.optimizer


class MetricsFile(TrainerCallback):
    """Appends every log entry with a loss to OUTPUT_DIR/metrics.jsonl (main process only)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
            with self.path.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")


def training_arguments(options: TrainOptions) -> TrainingArguments:
    return TrainingArguments(
        output_dir=options.output_dir, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum, learning_rate=options.learning_rate,
        num_train_epochs=options.epochs, max_steps=options.max_steps, weight_decay=options.weight_decay,
        warmup_steps=options.warmup_ratio, lr_scheduler_type=options.lr_scheduler,
        logging_steps=options.logging_steps, save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500, bf16=options.bf16, activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}, deepspeed=options.deepspeed,
        use_cpu=not torch.cuda.is_available(), report_to=[] if options.report_to == "none" else [options.report_to],
        dataloader_num_workers=options.num_workers, remove_unused_columns=False, seed=options.seed,
        ddp_find_unused_parameters=False,
    )


# ---------------------------------------------------------------------- run folder
def _is_run_file(entry: Path) -> bool:
    return entry.name in RUN_FILES or entry.name.startswith("checkpoint-")


def _held_run(output_dir: Path) -> list[str]:
    """The entries of an earlier run in `output_dir` (empty when there is none)."""
    return sorted(entry.name for entry in output_dir.iterdir() if _is_run_file(entry)) if output_dir.is_dir() else []


def run_differences(saved: dict, options: TrainOptions) -> list[str]:
    """What makes `options` another run than the one saved in train_options.json (data file size included)."""
    current = asdict(options)
    differences = [f"{key} {saved.get(key)!r} -> {value!r}" for key, value in current.items()
                   if key not in RESUMABLE_CHANGES and saved.get(key) != value]
    data_bytes = Path(options.data).stat().st_size
    if saved.get("data_bytes") not in (None, data_bytes):
        differences.append(f"data file size {saved['data_bytes']} -> {data_bytes} bytes")
    return differences


def prepare_run_dir(options: TrainOptions) -> tuple[str, list[str]]:
    """Check OUTPUT_DIR before any model is loaded; returns the mode ('fresh', 'resume' or 'finished') and the
    differences accepted with --resume-anyway.

    Refused (one line): an input as OUTPUT_DIR, a folder holding files of something else (unless
    --overwrite-output-dir), a folder holding a run without --resume or --overwrite-output-dir, and
    --resume of a run made with other options or data (unless --resume-anyway).
    """
    output_dir = Path(options.output_dir)
    prepare_output_dir(output_dir, inputs=[options.model, options.data, options.image_root], owned=_is_run_file,
                       overwrite=options.overwrite_output_dir, overwrite_flag="--overwrite-output-dir",
                       option="--output-dir", what="files of something else")
    held = _held_run(output_dir)
    if not held:
        if options.resume and _is_main_process():
            print(f"--resume: {output_dir} holds no run yet; starting from scratch")
        return "fresh", []
    if options.overwrite_output_dir:
        return "fresh", []
    if not options.resume:
        raise UserError(f"--output-dir {output_dir} already holds a run ({', '.join(held[:4])}); pass --resume "
                              "to continue it, --overwrite-output-dir to start again, or choose another folder")
    saved_file = output_dir / "train_options.json"
    differences = run_differences(json.loads(saved_file.read_text()), options) if saved_file.is_file() else []
    if differences and not options.resume_anyway:
        raise UserError(f"--resume: {output_dir} holds another run ({'; '.join(differences[:3])}); choose "
                              "another --output-dir, or pass --resume-anyway to continue it with these values")
    if (output_dir / "final" / "train_options.json").is_file():
        return "finished", differences
    if get_last_checkpoint(str(output_dir)) is None:
        if _is_main_process():
            print(f"--resume: {output_dir} holds no checkpoint; starting the stage from scratch")
        return "fresh", differences
    return "resume", differences


def _clear_run(output_dir: Path) -> None:
    """--overwrite-output-dir: remove the earlier run's files (main process), so that two runs never mix."""
    if _is_main_process():
        for entry in output_dir.iterdir():
            if _is_run_file(entry):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    _barrier()


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop log lines of steps after the checkpoint being resumed (they are trained again)."""
    if _is_main_process() and path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def _options_record(options: TrainOptions, resumed_with_changes: list[str]) -> dict:
    """train_options.json: the options, the data file size and what --resume-anyway accepted."""
    return {**asdict(options), "data_bytes": Path(options.data).stat().st_size,
            "resumed_with_changes": resumed_with_changes}


# ---------------------------------------------------------------------- run
def run(options: TrainOptions) -> Path:
    """Train one stage; returns OUTPUT_DIR/final. Raises `Preempted` when SIGTERM/SIGINT stopped it early."""
    options.validate()
    mode, changes = prepare_run_dir(options)
    output_dir = Path(options.output_dir)
    final = output_dir / "final"
    if mode == "finished":
        if _is_main_process():
            print(f"stage {options.stage} already finished with these options: {final}")
        return final
    arguments = training_arguments(options)  # sets up torch.distributed under a launcher
    _barrier()  # every process has read the run folder before the main process changes it
    if mode == "fresh" and options.overwrite_output_dir:
        _clear_run(output_dir)
    if mode == "resume":
        checkpoint = get_last_checkpoint(str(output_dir))
        _trim_metrics(output_dir / "metrics.jsonl", int(checkpoint.rsplit("-", 1)[-1]))
        if _is_main_process():
            print(f"resuming stage {options.stage} from {checkpoint}")
    processor = AutoProcessor.from_pretrained(options.model)
    set_seed(options.seed)  # the LoRA matrices are drawn before the Trainer seeds: same seed, same run
    model = load_model(options)
    num_image_tokens = image_token_count(processor, model.config.vision_config, model.config.vision_feature_select_strategy)
    dataset = ConversationDataset(
        options.data, processor, num_image_tokens, options.model_max_length, options.image_root,
        options.image_aspect_ratio, options.max_bad_fraction, show_progress=_is_main_process(),
    )
    model.config.use_cache = False
    model = set_trainable(model, options)
    trainable, total = count_parameters(model)
    if _is_main_process():
        print(f"stage {options.stage}: {dataset.report.summary()}")
        print(f"trainable parameters: {trainable:,} of {total:,}; lr {options.learning_rate:g}, "
              f"projector lr {options.projector_learning_rate:g}")
        (output_dir / "data_report.json").write_text(json.dumps(dataset.report.to_json(), indent=2) + "\n")
        (output_dir / "train_options.json").write_text(json.dumps(_options_record(options, changes), indent=2) + "\n")
    stop = GracefulStop()
    trainer = LlavaTrainer(
        model=model, args=arguments, train_dataset=dataset,
        data_collator=ConversationCollator(processor.tokenizer.pad_token_id),
        callbacks=[MetricsFile(output_dir / "metrics.jsonl"), stop],
        projector_lr=options.projector_learning_rate,
    )
    stop.install()  # kept through the final save: a stop signal then ends the job after `final` is written
    try:
        trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
        if stop.stopped:
            trainer.accelerator.wait_for_everyone()  # every process has written its part of the checkpoint
            raise Preempted(output_dir / f"checkpoint-{stop.stopped_at_step}", stop.signal_name, stop.stopped_at_step)
        if trainer.is_world_process_zero():
            (output_dir / "run_info.json").write_text(json.dumps(run_info(trainer), indent=2) + "\n")
        return save_final(trainer, processor, options, changes)
    finally:
        stop.uninstall()


def run_info(trainer: Trainer) -> dict:
    """How the run was actually executed (processes, DeepSpeed ZeRO stage, device, global batch)."""
    engine = trainer.model_wrapped
    zero_stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None
    args = trainer.args
    return {
        "world_size": args.world_size, "deepspeed_zero_stage": zero_stage, "device": str(args.device),
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "steps": trainer.state.global_step,
    }


def save_final(trainer: Trainer, processor, options: TrainOptions, resumed_with_changes: list[str]) -> Path:
    """OUTPUT_DIR/final: full model (LoRA merged) + processor + the build note, for stock loaders."""
    output_dir = Path(options.output_dir)
    final = output_dir / "final"
    if not options.lora:
        trainer.save_model(str(final))
    else:
        trainer.save_model(str(output_dir / "adapter"))
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            dtype = torch.bfloat16 if options.bf16 else torch.float32
            merge_adapter(options.model, output_dir / "adapter", dtype).save_pretrained(str(final))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(final))
        note = Path(options.model) / "lmm_build.json"
        if note.is_file():
            shutil.copy(note, final / "lmm_build.json")
        # written last: its presence marks a finished stage (--resume then has nothing to do)
        record = _options_record(options, resumed_with_changes)
        (final / "train_options.json").write_text(json.dumps(record, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lmm_integration.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--stage", required=True, choices=("A", "B"), help="A: projector only; B: projector + LM (instruction tuning)")
    add("--model", required=True, help="LLaVA folder: from lmm_integration.build (stage A) or a stage-A final (stage B)")
    add("--data", required=True, help="LLaVA conversation JSON list or JSONL (data-format.md section 3)")
    add("--output-dir", required=True, help="run folder; the model is written to OUTPUT_DIR/final")
    add("--image-root", help="root of relative image paths (default: the data file's folder)")
    add("--epochs", type=float, default=1.0, help="training epochs (LLaVA-1.5: 1 per stage)")
    add("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (overrides --epochs)")
    add("--batch-size", type=int, default=16, help="per-device batch size (global = this x devices x --grad-accum)")
    add("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    add("--lr", type=float, help="learning rate (default: 1e-3 stage A, 2e-5 stage B, 2e-4 with LoRA)")
    add("--projector-lr", type=float, help="projector learning rate (default: --lr; 2e-5 with LoRA)")
    add("--weight-decay", type=float, default=0.0, help="AdamW weight decay (not on biases and norms)")
    add("--warmup-ratio", type=float, default=0.03, help="share of steps with linear warm-up")
    add("--lr-scheduler", default="cosine", help="transformers scheduler name (cosine, linear, constant, ...)")
    add("--model-max-length", type=int, default=2048, help="longest token sequence (image tokens included)")
    add("--image-aspect-ratio", choices=ASPECT_MODES, default="pad",
        help="pad: pad to a square with the mean colour first (LLaVA-1.5); resize: squash")
    add("--unfreeze-vision", action="store_true", help="also train the vision tower")
    add("--lora", action="store_true", help="train LoRA adapters on the LM instead of the LM itself (stage B)")
    add("--lora-r", type=int, default=128, help="LoRA rank")
    add("--lora-alpha", type=int, default=256, help="LoRA alpha")
    add("--lora-dropout", type=float, default=0.05, help="LoRA dropout")
    add("--qlora", type=int, choices=(4, 8), help="QLoRA: load the LM in 4-bit NF4 or 8-bit (implies --lora)")
    add("--gradient-checkpointing", action="store_true", help="recompute activations in backward to save memory")
    add("--bf16", action="store_true", help="bfloat16 training (DeepSpeed bf16 / autocast)")
    add("--deepspeed", help="DeepSpeed JSON config, e.g. scripts/zero2_llava.json")
    add("--seed", type=int, default=42, help="random seed")
    add("--save-steps", type=int, default=0, help="checkpoint every N steps (0: only the final model)")
    add("--logging-steps", type=int, default=10, help="log (and append to metrics.jsonl) every N steps")
    add("--num-workers", type=int, default=4, help="data loader worker processes")
    add("--max-bad-fraction", type=float, default=0.5, help="stop with an error if more records than this are skipped")
    add("--report-to", default="none", help="none, tensorboard, wandb, ...")
    add("--resume", action="store_true",
        help="continue the run in OUTPUT_DIR from its latest checkpoint (nothing to do when it has finished; starts "
             "from scratch when there is none); refused when that run used other options or data")
    add("--resume-anyway", action="store_true",
        help="with --resume: continue even though options or data differ (the differences are recorded)")
    add("--overwrite-output-dir", action="store_true",
        help="start again in an OUTPUT_DIR that holds a run (its checkpoints, final model and logs are deleted) or "
             "files of something else")
    add("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    return parser


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    values = {key: value for key, value in vars(args).items() if key != "local_rank"}
    return TrainOptions(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        final = run(options_from_args(args))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Preempted as stopped:
        if _is_main_process():
            print(f"stage {args.stage} {stopped}: checkpoint saved in {stopped.checkpoint}; continue with --resume "
                  "(scripts/finetune_llava.sh: run the same command again)", flush=True)
        return PREEMPTED_EXIT_CODE
    if _is_main_process():
        print(f"stage {args.stage} done: model written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
