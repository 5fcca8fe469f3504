"""One LLaVA training stage with the Hugging Face Trainer: the model, what is trained, the run folder, pre-emption
and the final folder. The command and its options are `lmm_integration.train`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
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
from fgclip.train.preemption import TerminationRequest, ignore_stop_signals_in_worker
from fgclip.train.run_folder import LOCK_FILE, claim_run_folder
from lmm_integration.data import ConversationCollator, ConversationDataset, image_token_count
from lmm_integration.lora import PROJECTOR, LoraOptions, add_lora, merge_adapter, quantization_config
from lmm_integration.train_options import TrainOptions

RUN_FILES = ("train_options.json", "metrics.jsonl", "data_report.json", "run_info.json", "final", "adapter", "runs")
# options that may change between a run and its resumption: they do not change what is trained
RESUMABLE_CHANGES = (
    "output_dir",
    "num_workers",
    "logging_steps",
    "save_steps",
    "report_to",
    "resume",
    "resume_anyway",
    "overwrite_output_dir",
    "gradient_checkpointing",
    "deepspeed",
    "max_bad_fraction",
)


class Preempted(Exception):
    """The stage stopped on SIGTERM/SIGINT after saving `checkpoint`."""

    def __init__(self, checkpoint: Path, signal_name: str, step: int):
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.checkpoint, self.signal_name, self.step = checkpoint, signal_name, step


class GracefulStop(TrainerCallback):
    """Stops the Trainer after the current step, with a checkpoint, once SIGTERM or SIGINT has arrived
    (`fgclip.train.preemption`, the trainer's rule: the signal raises a flag, every process stops after the same step).

    At the end of every optimizer step all processes agree (one all-reduce of the flag) whether any of them was
    signalled; the Trainer then saves `OUTPUT_DIR/checkpoint-N` (weights, optimizer, scheduler, RNG states) and
    training returns. DataLoader workers ignore the signals (`LlavaTrainer.get_train_dataloader`).
    """

    def __init__(self):
        self.request = TerminationRequest(interrupt=True)
        self.stopped_at_step: int | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_at_step is not None

    @property
    def signal_name(self) -> str | None:
        return self.request.signal_name

    def _any_process_signalled(self, args) -> bool:
        requested = self.request.requested
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([1 if requested else 0], device=args.device)  # on the GPU for NCCL
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested

    def on_step_end(self, args, state, control, **kwargs):
        if not self.stopped and self._any_process_signalled(args):
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class _WorkerInit:
    """A DataLoader `worker_init_fn`: the Trainer's own, then SIGTERM and SIGINT left to the main process."""

    def __init__(self, worker_init_fn=None):
        self.worker_init_fn = worker_init_fn

    def __call__(self, worker_id: int) -> None:
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)
        ignore_stop_signals_in_worker(worker_id)


def is_main_process() -> bool:
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
        model = add_lora(
            model,
            LoraOptions(options.lora_r, options.lora_alpha, options.lora_dropout, options.qlora),
            options.gradient_checkpointing,
        )
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
        full_weights = any(
            (Path(resume_from_checkpoint) / name).is_file()
            for name in ("model.safetensors", "model.safetensors.index.json")
        )
        if self.is_deepspeed_enabled or hasattr(model, "get_base_model") or not full_weights:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype)
        model.load_state_dict(saved.state_dict(), strict=True)
        return None

    def get_train_dataloader(self):
        loader = super().get_train_dataloader()
        torch_loader = getattr(loader, "base_dataloader", loader)  # accelerate wraps the torch DataLoader
        torch_loader.worker_init_fn = _WorkerInit(torch_loader.worker_init_fn)
        if torch_loader.num_workers and dist.is_available() and dist.is_initialized():
            # Forking a process that runs gloo/NCCL threads can copy a lock another thread holds into the worker,
            # which then hangs before its first batch and the rank waits for it forever (seen here: a 2-process
            # CPU run stuck at the first batch of an epoch). Workers come from a clean forkserver process instead.
            torch_loader.multiprocessing_context = "forkserver"
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
            {
                "params": params,
                "weight_decay": self.args.weight_decay if decayed else 0.0,
                **({"lr": self.projector_lr} if is_projector else {}),
            }
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
        output_dir=options.output_dir,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        weight_decay=options.weight_decay,
        warmup_steps=options.warmup_ratio,
        lr_scheduler_type=options.lr_scheduler,
        logging_steps=options.logging_steps,
        save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500,
        bf16=options.bf16,
        activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        deepspeed=options.deepspeed,
        use_cpu=not torch.cuda.is_available(),
        report_to=[] if options.report_to == "none" else [options.report_to],
        dataloader_num_workers=options.num_workers,
        remove_unused_columns=False,
        seed=options.seed,
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
    differences = [
        f"{key} {saved.get(key)!r} -> {value!r}"
        for key, value in current.items()
        if key not in RESUMABLE_CHANGES and saved.get(key) != value
    ]
    data_bytes = Path(options.data).stat().st_size
    if saved.get("data_bytes") not in (None, data_bytes):
        differences.append(f"data file size {saved['data_bytes']} -> {data_bytes} bytes")
    return differences


def prepare_run_dir(options: TrainOptions) -> tuple[str, list[str]]:
    """Check OUTPUT_DIR before any model is loaded; returns the mode ('fresh', 'resume' or 'finished') and the
    differences accepted with --resume_anyway.

    Refused (one line): an input as OUTPUT_DIR, a folder holding files of something else (unless
    --overwrite_output_dir), a folder holding a run without --resume or --overwrite_output_dir, and
    --resume of a run made with other options or data (unless --resume_anyway).
    """
    output_dir = Path(options.output_dir)
    prepare_output_dir(
        output_dir,
        inputs=[options.model, options.data, options.image_root],
        owned=lambda entry: entry.name == LOCK_FILE or _is_run_file(entry),
        overwrite=options.overwrite_output_dir,
        overwrite_flag="--overwrite_output_dir",
        option="--output_dir",
        what="files of something else",
    )
    held = _held_run(output_dir)
    if not held:
        if options.resume and is_main_process():
            print(f"--resume: {output_dir} holds no run yet; starting from scratch")
        return "fresh", []
    if options.overwrite_output_dir:
        return "fresh", []
    if not options.resume:
        raise UserError(
            f"--output_dir {output_dir} already holds a run ({', '.join(held[:4])}); pass --resume "
            "to continue it, --overwrite_output_dir to start again, or choose another folder"
        )
    saved_file = output_dir / "train_options.json"
    differences = run_differences(json.loads(saved_file.read_text()), options) if saved_file.is_file() else []
    if differences and not options.resume_anyway:
        raise UserError(
            f"--resume: {output_dir} holds another run ({'; '.join(differences[:3])}); choose "
            "another --output_dir, or pass --resume_anyway to continue it with these values"
        )
    if (output_dir / "final" / "train_options.json").is_file():
        return "finished", differences
    if get_last_checkpoint(str(output_dir)) is None:
        if is_main_process():
            print(f"--resume: {output_dir} holds no checkpoint; starting the stage from scratch")
        return "fresh", differences
    return "resume", differences


def _clear_run(output_dir: Path) -> None:
    """--overwrite_output_dir: remove the earlier run's files (main process), so that two runs never mix."""
    if is_main_process():
        for entry in output_dir.iterdir():
            if _is_run_file(entry):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    _barrier()


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop log lines of steps after the checkpoint being resumed (they are trained again)."""
    if is_main_process() and path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def _options_record(options: TrainOptions, resumed_with_changes: list[str]) -> dict:
    """train_options.json: the options, the data file size and what --resume_anyway accepted."""
    return {
        **asdict(options),
        "data_bytes": Path(options.data).stat().st_size,
        "resumed_with_changes": resumed_with_changes,
    }


# ---------------------------------------------------------------------- run
def train_stage(options: TrainOptions) -> Path:
    """Train one stage (options validated); returns OUTPUT_DIR/final. Raises `Preempted` when SIGTERM/SIGINT
    stopped it early."""
    mode, changes = prepare_run_dir(options)
    output_dir = Path(options.output_dir)
    final = output_dir / "final"
    if mode == "finished":
        if is_main_process():
            print(f"stage {options.stage} already finished with these options: {final}")
        return final
    arguments = training_arguments(options)  # sets up torch.distributed under a launcher
    # one job at a time; every process passes here after reading the folder, before the main process changes it
    claim_run_folder(output_dir, is_main_process())
    if mode == "fresh" and options.overwrite_output_dir:
        _clear_run(output_dir)
    if mode == "resume":
        checkpoint = get_last_checkpoint(str(output_dir))
        _trim_metrics(output_dir / "metrics.jsonl", int(checkpoint.rsplit("-", 1)[-1]))
        if is_main_process():
            print(f"resuming stage {options.stage} from {checkpoint}")
    processor = AutoProcessor.from_pretrained(options.model)
    set_seed(options.seed)  # the LoRA matrices are drawn before the Trainer seeds: same seed, same run
    model = load_model(options)
    num_image_tokens = image_token_count(
        processor, model.config.vision_config, model.config.vision_feature_select_strategy
    )
    dataset = ConversationDataset(
        options.data,
        processor,
        num_image_tokens,
        options.model_max_length,
        options.image_root,
        options.image_aspect_ratio,
        options.max_bad_fraction,
        show_progress=is_main_process(),
    )
    model.config.use_cache = False
    model = set_trainable(model, options)
    trainable, total = count_parameters(model)
    if is_main_process():
        print(f"stage {options.stage}: {dataset.report.summary()}")
        print(
            f"trainable parameters: {trainable:,} of {total:,}; lr {options.learning_rate:g}, "
            f"projector lr {options.projector_learning_rate:g}"
        )
        (output_dir / "data_report.json").write_text(json.dumps(dataset.report.to_json(), indent=2) + "\n")
        (output_dir / "train_options.json").write_text(json.dumps(_options_record(options, changes), indent=2) + "\n")
    stop = GracefulStop()
    trainer = LlavaTrainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        data_collator=ConversationCollator(processor.tokenizer.pad_token_id),
        callbacks=[MetricsFile(output_dir / "metrics.jsonl"), stop],
        projector_lr=options.projector_learning_rate,
    )
    with stop.request:  # kept through the final save: a stop signal then ends the job after `final` is written
        trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
        if stop.stopped:
            trainer.accelerator.wait_for_everyone()  # every process has written its part of the checkpoint
            raise Preempted(output_dir / f"checkpoint-{stop.stopped_at_step}", stop.signal_name, stop.stopped_at_step)
        if trainer.is_world_process_zero():
            (output_dir / "run_info.json").write_text(json.dumps(run_info(trainer), indent=2) + "\n")
        return save_final(trainer, processor, options, changes)


def run_info(trainer: Trainer) -> dict:
    """How the run was actually executed (processes, DeepSpeed ZeRO stage, device, global batch)."""
    engine = trainer.model_wrapped
    zero_stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None
    args = trainer.args
    return {
        "world_size": args.world_size,
        "deepspeed_zero_stage": zero_stage,
        "device": str(args.device),
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
