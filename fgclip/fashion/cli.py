"""Command line of `scripts/finetune_fashion.py` (also `python -m fgclip.fashion.cli`): the options are the fields
of `fgclip.fashion.config.FinetuneConfig`'s groups; parse, check, run.

Exit codes: 0 done; 2 bad usage, a missing or unusable path, a folder that is not a model, an incompatible
checkpoint, data in no supported layout or too many bad items (one line on stderr, never a traceback);
1 a run that could not go on (repeated non-finite losses); 143 stopped by SIGTERM after saving a checkpoint
(`--resume latest` continues); 130 interrupted.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

from fgclip.cli import CommandParser, entry_point, options_from
from fgclip.errors import UserError
from fgclip.fashion.config import OPTION_GROUPS, FinetuneConfig

DESCRIPTION = (
    "Fashion-FINE finetuning of FG-CLIP (or CLIP) towers: global + local embeddings (one attention pooling layer "
    "shared by patches and words), focal contrastive loss and image-text matching with sampled hard negatives "
    "(--task retrieval), or the trained cross-attention composition of a reference image and a modification text "
    "(--task tgir). Runs as `python`, under `torchrun` and under the `deepspeed` launcher (ZeRO-2 whenever there is "
    "more than one process). Model selection uses the validation split only (--val or --val_fraction): "
    "OUTPUT_DIR/best is the best validation step, OUTPUT_DIR/final the last step. SIGTERM saves a checkpoint and "
    "exits with 143; --resume latest continues bitwise as if uninterrupted (CPU; on GPU with --deterministic)."
)


def build_parser() -> CommandParser:
    return CommandParser(prog="finetune_fashion.py", description=textwrap.fill(DESCRIPTION, 110), options=OPTION_GROUPS)


def validate(config: FinetuneConfig) -> None:
    """What the option types cannot say."""
    if config.val and config.val_fraction:
        raise UserError("give --val or --val_fraction, not both")
    if not config.val_fraction < 1:
        raise UserError(f"--val_fraction must be below 1, got {config.val_fraction}")
    if config.task == "tgir" and config.matching_weight:
        raise UserError("--matching_weight applies to --task retrieval (text-guided finetuning has no matching loss)")
    for name in ("contrastive_weight", "matching_weight", "focal_gamma", "focal_alpha", "weight_decay", "grad_clip"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")


def config_from_args(args) -> FinetuneConfig:
    """The run's `FinetuneConfig`: the options given, the task's recipe for the rest."""
    config = options_from(args, FinetuneConfig)
    validate(config)
    return config.resolved()


def check_paths(config: FinetuneConfig) -> None:
    """Fail on a missing input before any heavy work (the output folder is checked by the run)."""
    for path in config.data + config.val:
        if not os.path.exists(path):
            raise UserError(f"data path not found: {path}")
    if config.images and not os.path.isdir(config.images):
        raise UserError(f"--images {config.images} is not a folder")
    if not os.path.isdir(config.init):
        raise UserError(f"--init {config.init}: no such folder")
    if config.deepspeed_config and not os.path.isfile(config.deepspeed_config):
        raise UserError(f"DeepSpeed config not found: {config.deepspeed_config}")


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    check_paths(config)
    # Imported here so that --help and usage errors stay fast and quiet.
    from fgclip.fashion.train import finetune
    from fgclip.train.distributed import setup_distributed
    from fgclip.train.runner import training_exit_code

    return training_exit_code(
        lambda: finetune(config, setup_distributed(config.force_deepspeed, config.local_rank is not None))
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
