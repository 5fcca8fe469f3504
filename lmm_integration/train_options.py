"""The options of one LLaVA training stage (`lmm_integration.train`), with the recipe's learning rates: the one
place for them. Standard library only, so the command parses before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fgclip.cli import fraction, non_negative_int, option, output_dir_option, positive_int
from fgclip.errors import UserError
from fgclip.llava.boxes import ASPECT_MODES

# The learning rates of the LLaVA-1.5 recipe: the one place for them (scripts/finetune_llava.sh passes --lr only
# when LR_A / LR_B are set).
STAGE_LR = {"A": 1e-3, "B": 2e-5}
LORA_LR, LORA_PROJECTOR_LR = 2e-4, 2e-5


@dataclass
class TrainOptions:
    """Everything one run needs; saved to OUTPUT_DIR/train_options.json."""

    stage: Literal["A", "B"] = option("A: projector only; B: projector + LM (instruction tuning)")
    model: str = option(
        "LLaVA folder: from lmm_integration.build (stage A) or a stage-A final (stage B)",
        aliases=["model_name_or_path"],
    )
    data: str = option("LLaVA conversation JSON list or JSONL (data-format.md section 3)", aliases=["data_path"])
    output_dir: str = output_dir_option("run folder; the model is written to OUTPUT_DIR/final")
    image_root: str | None = option(
        "root of relative image paths (default: the data file's folder)", None, aliases=["image_folder"]
    )
    epochs: float = option("training epochs (LLaVA-1.5: 1 per stage)", 1.0, aliases=["num_train_epochs"])
    max_steps: int = option("stop after this many optimizer steps (overrides --epochs; -1: no limit)", -1)
    batch_size: int = option(
        "per-device batch size (global = this x devices x --grad_accum)",
        16,
        type=positive_int,
        aliases=["per_device_train_batch_size"],
    )
    grad_accum: int = option(
        "gradient accumulation steps", 1, type=positive_int, aliases=["gradient_accumulation_steps"]
    )
    lr: float | None = option(
        f"learning rate (default: {STAGE_LR['A']:g} stage A, {STAGE_LR['B']:g} stage B, {LORA_LR:g} with LoRA)",
        None,
        aliases=["learning_rate"],
    )
    projector_lr: float | None = option(
        f"projector learning rate (default: --lr; {LORA_PROJECTOR_LR:g} with LoRA)", None, aliases=["mm_projector_lr"]
    )
    weight_decay: float = option("AdamW weight decay (not on biases and norms)", 0.0)
    warmup_ratio: float = option("share of steps with linear warm-up", 0.03, type=fraction)
    lr_scheduler: str = option(
        "transformers scheduler name (cosine, linear, constant, ...)", "cosine", aliases=["lr_scheduler_type"]
    )
    model_max_length: int = option("longest token sequence (image tokens included)", 2048, type=positive_int)
    image_aspect_ratio: str = option(
        "pad: pad to a square with the mean colour first (LLaVA-1.5); resize: squash", "pad", choices=ASPECT_MODES
    )
    unfreeze_vision: bool = option("also train the vision tower", False)
    lora: bool = option(
        "train LoRA adapters on the LM instead of the LM itself (stage B)", False, aliases=["lora_enable"]
    )
    lora_r: int = option("LoRA rank", 128, type=positive_int)
    lora_alpha: int = option("LoRA alpha", 256, type=positive_int)
    lora_dropout: float = option("LoRA dropout", 0.05, type=fraction)
    qlora: int | None = option("QLoRA: load the LM in 4-bit NF4 or 8-bit (implies --lora)", None, choices=(4, 8))
    gradient_checkpointing: bool = option("recompute activations in backward to save memory", False)
    bf16: bool = option("bfloat16 training (DeepSpeed bf16 / autocast)", False)
    deepspeed: str | None = option("DeepSpeed JSON config, e.g. scripts/zero2_llava.json", None)
    seed: int = option("random seed", 42)
    save_steps: int = option("checkpoint every N steps (0: only the final model)", 0, type=non_negative_int)
    logging_steps: int = option("log (and append to metrics.jsonl) every N steps", 10, type=positive_int)
    num_workers: int = option(
        "data loader worker processes", 4, type=non_negative_int, aliases=["dataloader_num_workers"]
    )
    max_bad_fraction: float = option("stop with an error if more records than this are skipped", 0.5, type=fraction)
    report_to: str = option("none, tensorboard, wandb, ...", "none")
    resume: bool = option(
        "continue the run in OUTPUT_DIR from its latest checkpoint (nothing to do when it has finished; starts from "
        "scratch when there is none); refused when that run used other options or data",
        False,
    )
    resume_anyway: bool = option(
        "with --resume: continue even though options or data differ (the differences are recorded)", False
    )
    overwrite_output_dir: bool = option(
        "start again in an OUTPUT_DIR that holds a run (its checkpoints, final model and logs are deleted) or files "
        "of something else",
        False,
    )

    def validate(self) -> None:
        if self.stage not in STAGE_LR:
            raise UserError("--stage must be A or B")
        if self.resume and self.overwrite_output_dir:
            raise UserError(
                "give --resume (continue the run in --output_dir) or --overwrite_output_dir (start it again), not both"
            )
        if self.qlora is not None:
            if self.qlora not in (4, 8):
                raise UserError("--qlora takes 4 or 8")
            self.lora = True  # QLoRA is LoRA on a quantised LM
        if self.lora and self.stage == "A":
            raise UserError("LoRA applies to stage B (stage A trains the projector only)")
        if self.image_aspect_ratio not in ASPECT_MODES:
            raise UserError(f"--image_aspect_ratio must be one of {ASPECT_MODES}")
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
