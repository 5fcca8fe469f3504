"""Finetune a LLaVA model with an FG-CLIP tower: the LLaVA-1.5 recipe in two stages.

    stage A (projector pre-training): tower and LM frozen, projector trained
    stage B (visual instruction tuning): projector + LM trained, tower frozen unless --unfreeze_vision

    python -m lmm_integration.train --stage A --model BUILT_DIR --data captions.json --output_dir runs/a
    deepspeed --module lmm_integration.train --stage B --model runs/a/final --data mix.json \\
        --output_dir runs/b --deepspeed scripts/zero2_llava.json

Uses the Hugging Face Trainer (with a DeepSpeed config when given; on a machine without a GPU it runs on
CPU with gloo). The final model is OUTPUT_DIR/final, loadable by stock `LlavaForConditionalGeneration` and
`AutoProcessor`; with --lora/--qlora the adapter is kept in OUTPUT_DIR/adapter and merged into `final`.
OUTPUT_DIR/metrics.jsonl has one JSON object per logged step, OUTPUT_DIR/data_report.json the skip counts,
OUTPUT_DIR/run_info.json how the run was executed (processes, ZeRO stage, global batch).

Runs are never mixed or lost: an OUTPUT_DIR holding a run is refused unless --resume (continue it: from its
latest checkpoint, or nothing to do when it has finished) or --overwrite_output_dir (start again) is given,
and --resume refuses a run made with other options or data (--resume_anyway overrides, and is recorded).
SIGTERM (how SLURM and Kubernetes stop a job) or Ctrl-C: the stage finishes its step, saves
OUTPUT_DIR/checkpoint-N, prints where, and exits with code 143; --resume continues from there.

The options of the original LLaVA's train.py are accepted under its names too (--model_name_or_path, --data_path,
--image_folder, --learning_rate, --mm_projector_lr, --per_device_train_batch_size, --gradient_accumulation_steps,
--num_train_epochs, --lr_scheduler_type, --dataloader_num_workers, --lora_enable), as are the --kebab-case forms.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, options_from
from lmm_integration.train_options import TrainOptions

__all__ = ["TrainOptions", "build_parser", "main", "train"]


def train(options: TrainOptions) -> Path:
    """Train one stage; returns OUTPUT_DIR/final. Raises `lmm_integration.trainer.Preempted` when SIGTERM or
    Ctrl-C stopped it early (after saving a checkpoint)."""
    options.validate()
    from lmm_integration.trainer import train_stage

    return train_stage(options)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m lmm_integration.train", description=__doc__)
    parser.add_options(TrainOptions)
    # set by the deepspeed launcher; the Trainer reads LOCAL_RANK from the environment
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv), TrainOptions)
    options.validate()  # before torch loads: a bad option is one line at once
    from fgclip.train.distributed import cleanup_quietly, release_deepspeed_shared_memory
    from fgclip.train.run_folder import unlock_run_folder
    from lmm_integration.trainer import Preempted, is_main_process

    try:
        final = train(options)
    except Preempted as stopped:
        if is_main_process():
            print(
                f"stage {options.stage} {stopped}: checkpoint saved in {stopped.checkpoint}; continue with --resume "
                "(scripts/finetune_llava.sh: run the same command again)",
                flush=True,
            )
        from fgclip.train.preemption import EXIT_CODE

        return EXIT_CODE
    finally:
        unlock_run_folder(options.output_dir)  # the stage is over: another process may train in the folder now
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched: a group left to interpreter exit can hang there
            cleanup_quietly()
        else:  # in-process runs share the Trainer's group state; only the DeepSpeed buffer is ours to remove
            release_deepspeed_shared_memory()
    if is_main_process():
        print(f"stage {options.stage} done: model written to {final}")
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
