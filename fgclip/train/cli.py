"""Command line of `scripts/pretrain_fgclip.py` (also `python -m fgclip.train.cli`): the options are the fields of
`fgclip.train.config`'s dataclasses (`fgclip.cli`); parse once into a `TrainConfig`, run, map errors to exit codes.

Exit codes: 0 done; 2 bad usage, a missing or unusable path, an output folder that holds another run, an
incompatible checkpoint, or too many bad records (one line on stderr, never a traceback); 1 a run that could
not go on (repeated non-finite losses); 143 stopped by SIGTERM after saving a checkpoint; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from fgclip.cli import CommandParser, entry_point, option, positive_int
from fgclip.errors import UserError
from fgclip.loss_weights import LossWeights
from fgclip.train.config import DataConfig, ModelInit, OptimConfig, TrainConfig

DESCRIPTION = (
    "Two-stage FG-CLIP pretraining (stage 1: global contrastive on long + short captions; stage 2: + regional and "
    "hard-negative losses). Runs as `python`, under `torchrun` and under the `deepspeed` launcher (DeepSpeed ZeRO-2 "
    "whenever there is more than one process). With neither --data nor --init it runs the embedded default "
    "experiment: synthesise a fine-grained scene set, train a tiny FG-CLIP through stage 1 and stage 2 on CPU, "
    "evaluate on a held-out split and print a stage-1 vs stage-2 table."
)
DEFAULT_EXPERIMENT_OPTIONS = (
    "output_dir",
    "seed",
    "num_workers",
    "report_to",
    "bf16",
    "deepspeed",
    "log_every",
    "progress",
    "synthetic_images",
    "max_steps",
    "local_rank",
    "deterministic",
    "overwrite_output_dir",
)
# The values the start-up block and train_config.json attribute to a flag, the recipe or the default.
RECIPE_VALUES = ("lr", "weight_decay", "warmup_steps", "batch_size")
SOURCED_VALUES = (*RECIPE_VALUES, "min_lr_ratio", "grad_clip", "grad_accum", "epochs", "max_steps")


@dataclass
class LaunchOptions:
    """Options outside a `TrainConfig`: the embedded default's size and the deepspeed launcher's rank."""

    synthetic_images: int | None = option(
        "embedded default only: images to synthesise, both splits (default: the experiment's 2,500)",
        None,
        type=positive_int,
    )
    local_rank: int | None = option("set by the deepspeed launcher; do not set by hand", None)


OPTION_GROUPS = (
    (ModelInit, "model"),
    (DataConfig, "data"),
    (TrainConfig, "run: length, batch, precision, distribution, checkpoints, logging"),
    (OptimConfig, "optimizer (AdamW, linear warm-up then cosine)"),
    (LossWeights, "loss weights (stage 1 uses only long and short)"),
    (LaunchOptions, "launch"),
)


class _Parser(CommandParser):
    """`--help` shows each option's default (from its dataclass); a parsed option the user did not give is None,
    so that its value can come from the recipe and the start-up block can say where each value came from."""

    def parse_known_args(self, args=None, namespace=None):
        namespace = namespace if namespace is not None else argparse.Namespace()
        for action in self._actions:
            if action.dest != argparse.SUPPRESS and action.default is not argparse.SUPPRESS:
                if not hasattr(namespace, action.dest):
                    setattr(namespace, action.dest, None)  # argparse fills defaults only where nothing is set
        return super().parse_known_args(args, namespace)


def build_parser() -> CommandParser:
    return _Parser(prog="pretrain_fgclip.py", description=textwrap.fill(DESCRIPTION, 110), options=OPTION_GROUPS)


def given(args: argparse.Namespace, config_type: type) -> dict:
    """The fields of `config_type` whose options the user gave (field name -> value)."""
    values = {}
    for item in dataclasses.fields(config_type):
        dest = item.metadata.get("name") or item.name
        if "help" in item.metadata and getattr(args, dest, None) is not None:
            values[item.name] = getattr(args, dest)
    return values


def is_default_experiment(args: argparse.Namespace) -> bool:
    return args.data is None and args.init is None


def validate(args: argparse.Namespace) -> None:
    """What the option types cannot say."""
    if args.overwrite_output_dir and args.resume:
        raise UserError("--overwrite_output_dir and --resume contradict each other: replace the run or continue it")
    if args.resume_anyway and not args.resume:
        raise UserError("--resume_anyway needs --resume")
    if is_default_experiment(args):
        extra = [
            name for name, value in vars(args).items() if value is not None and name not in DEFAULT_EXPERIMENT_OPTIONS
        ]
        if extra:
            raise UserError(
                f"--{extra[0]} needs a training run (--data and --init); the embedded default takes only "
                + ", ".join(f"--{o}" for o in DEFAULT_EXPERIMENT_OPTIONS if o != "local_rank")
            )
        return
    if args.data is None:
        raise UserError("--data is required with --init (give neither for the embedded default experiment)")
    if args.init is None:
        raise UserError("--init is required with --data: 'tiny' or a model folder")
    if args.synthetic_images is not None:
        raise UserError("--synthetic_images applies to the embedded default only (no --data, no --init)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig`: the options given, the recipe of the model and stage for the recipe's values, the
    dataclasses' defaults for the rest; `sources` says which for each optimisation value."""
    from fgclip.train.recipes import choose_recipe

    run_values = given(args, TrainConfig)
    stage = run_values.setdefault("stage", TrainConfig.stage)
    choice = choose_recipe(args.init, stage)
    from_recipe = {name: getattr(choice.recipe, name) for name in RECIPE_VALUES}
    optim_values = {**{k: v for k, v in from_recipe.items() if k != "batch_size"}, **given(args, OptimConfig)}
    run_values.setdefault("batch_size", from_recipe["batch_size"])
    run_values.setdefault("output_dir", f"runs/stage{stage}")
    sources = {"recipe": choice.reason}
    for name in SOURCED_VALUES:
        if getattr(args, name) is not None:
            sources[name] = f"--{name}"
        else:
            sources[name] = (
                f"recipe {choice.name}" if name in RECIPE_VALUES else ("not set" if name == "max_steps" else "default")
            )
    return TrainConfig(
        model=ModelInit(**given(args, ModelInit)),
        data=DataConfig(**given(args, DataConfig)),
        optim=OptimConfig(**optim_values),
        loss=LossWeights(**given(args, LossWeights)),
        force_deepspeed=args.deepspeed is not None,
        recipe=choice.name,
        sources=sources,
        **run_values,
    )


def _precheck_paths(args: argparse.Namespace) -> None:
    """Fail on a missing --data / --init / --images / --deepspeed path, or an --output_dir that is a file,
    before any process group or model is made."""
    from fgclip.data.readers import expand_data_paths
    from fgclip.train.model_init import describe_init

    for path in expand_data_paths(args.data):
        if not path.exists():
            raise UserError(f"data path not found: {path}")
    describe_init(args.init)
    if args.images is not None and not os.path.isdir(args.images):
        raise UserError(f"--images {args.images}: no such folder")
    if args.deepspeed and not os.path.isfile(args.deepspeed):
        raise UserError(f"DeepSpeed config not found: {args.deepspeed}")
    if args.output_dir and os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise UserError(f"--output_dir {args.output_dir} is a file; give a folder (it is created when missing)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so that --help and usage errors stay fast and quiet.
    from fgclip.train.runner import training_exit_code

    return training_exit_code(lambda: _start(args))


def _start(args: argparse.Namespace) -> None:
    launched_by_deepspeed = args.local_rank is not None
    validate(args)
    if is_default_experiment(args):
        from fgclip.train.default_experiment import run_from_args

        run_from_args(args, launched_by_deepspeed)
        return
    from fgclip.train.loop import train

    _precheck_paths(args)
    train(config_from_args(args), launched_by_deepspeed=launched_by_deepspeed)


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
