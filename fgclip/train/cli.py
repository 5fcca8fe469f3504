"""Command line of `scripts/pretrain_fgclip.py`: parse once into a `TrainConfig`, run, map errors to exit codes.

Exit codes: 0 done; 2 bad usage, a missing or unusable path, an incompatible checkpoint, or too many bad
records (one line on stderr, never a traceback); 1 a run that could not go on (repeated non-finite
losses); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fgclip.errors import UserError
from fgclip.losses import LossWeights
from fgclip.train.config import SHIPPED_DEEPSPEED_CONFIG, DataConfig, ModelInit, OptimConfig, TrainConfig, recipe_for

DEFAULT_EXPERIMENT_OPTIONS = ("output_dir", "seed", "num_workers", "report_to", "bf16", "deepspeed", "log_every",
                              "no_progress", "synthetic_images", "max_steps", "local_rank")


class UsageError(UserError, ValueError):
    """Options that do not fit together (one-line message, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pretrain_fgclip.py",
        description="Two-stage FG-CLIP pretraining (stage 1: global contrastive on long + short captions; stage 2: "
        "+ regional and hard-negative losses). Runs as `python`, under `torchrun` and under the `deepspeed` "
        "launcher (DeepSpeed ZeRO-2 whenever there is more than one process). With neither --data nor --init it "
        "runs the embedded default experiment: synthesise a fine-grained scene set, train a tiny FG-CLIP through "
        "stage 1 and stage 2 on CPU, evaluate on a held-out split and print a stage-1 vs stage-2 table.",
    )
    run = parser.add_argument_group("what to train")
    run.add_argument("--stage", type=int, choices=(1, 2), default=None,
                     help="1: global losses (long + short captions); 2: + regional (0.1) and hard-negative (0.5) "
                     "losses on region data [default 1]")
    run.add_argument("--data", nargs="+", default=None, metavar="PATH",
                     help="record files: .jsonl (this project's format), .json lists (this format or the official "
                     "FineHARD files, read directly), or webdataset .tar shards, brace patterns allowed "
                     "('shards/shard-{000000..000099}.tar'); make shards with python -m fgclip.data.shards")
    run.add_argument("--init", default=None, metavar="tiny|DIR",
                     help="'tiny' (a small model from scratch, for CPU), a stock Hugging Face CLIP folder, an FG-CLIP "
                     "folder of this project, or an official FG-CLIP release folder")
    run.add_argument("--output_dir", default=None,
                     help="run folder: metrics.jsonl, checkpoints/, final/ [default runs/stage<N>, or "
                     "runs/default_experiment for the embedded default]")
    length = parser.add_argument_group("length and batch")
    length.add_argument("--epochs", type=int, default=None, help="passes over the data [default 1]")
    length.add_argument("--max_steps", type=int, default=None,
                        help="optimizer steps; overrides --epochs (embedded default: steps of each stage)")
    length.add_argument("--batch_size", type=int, default=None,
                        help="images per device per micro-batch [recipe: 384 stage 1, 512 stage 2; tiny 32]")
    length.add_argument("--grad_accum", type=int, default=None, help="micro-batches per optimizer step [default 1]")
    optim = parser.add_argument_group("optimizer (AdamW, linear warm-up then cosine)")
    optim.add_argument("--lr", type=float, default=None, help="peak learning rate [recipe: 1e-4 stage 1, 1e-6 stage 2; "
                       "tiny 1e-3 / 1e-3]")
    optim.add_argument("--weight_decay", type=float, default=None, help="AdamW weight decay on matrices [recipe 0.001]")
    optim.add_argument("--warmup_steps", type=int, default=None, help="linear warm-up steps [recipe 200]")
    optim.add_argument("--min_lr_ratio", type=float, default=None, help="cosine floor as a share of --lr [default 0]")
    optim.add_argument("--grad_clip", type=float, default=None, help="gradient-norm clip, 0 for none [default 1.0]")
    loss = parser.add_argument_group("loss weights (stage 1 uses only long and short)")
    loss.add_argument("--long_weight", type=float, default=None, help="global loss, long captions [default 1]")
    loss.add_argument("--short_weight", type=float, default=None, help="global loss, short captions [default 1]")
    loss.add_argument("--region_weight", type=float, default=None, help="regional loss [default 0.1]")
    loss.add_argument("--hard_weight", type=float, default=None, help="hard-negative loss [default 0.5]")
    data = parser.add_argument_group("data")
    data.add_argument("--num_workers", type=int, default=None,
                      help="data-loader processes per rank [default: 0 with <= 2 cores per rank, else cores - 1, max 8]")
    data.add_argument("--max_bad_fraction", type=float, default=None,
                      help="stop when more than this share of records is bad (unreadable/missing image, malformed "
                      "record, invalid box) [default 0.01]")
    data.add_argument("--max_regions", type=int, default=None, help="boxes used per image in stage 2 [default 4]")
    data.add_argument("--num_hard_negatives", type=int, default=None,
                      help="hard negatives used per box in stage 2 [default 10]")
    data.add_argument("--synthetic_images", type=int, default=None,
                      help="embedded default only: images to synthesise (both splits) [default 2500]")
    system = parser.add_argument_group("precision, distribution, checkpoints, logging")
    system.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 training [default: on with a bf16 GPU, off on CPU]")
    system.add_argument("--gradient_checkpointing", action="store_true", default=None,
                        help="recompute activations in the backward pass to save memory")
    system.add_argument("--seed", type=int, default=None, help="seed of weights (tiny), data order and sampling "
                        "[default 42]")
    system.add_argument("--deepspeed", nargs="?", const=str(SHIPPED_DEEPSPEED_CONFIG), default=None, metavar="CONFIG",
                        help="use DeepSpeed even in one process, with this config [default config: scripts/zero2.json, "
                        "ZeRO-2 as in the FG-CLIP release]; with several processes DeepSpeed is always used")
    system.add_argument("--resume", default=None, metavar="latest|PATH",
                        help="continue from the newest checkpoint of --output_dir, or from a checkpoint folder")
    system.add_argument("--save_every", type=int, default=None, help="checkpoint every N optimizer steps; 0: at the end "
                        "only [default 0]")
    system.add_argument("--save_total_limit", type=int, default=None, help="checkpoints kept [default 2]")
    system.add_argument("--log_every", type=int, default=None, help="log every N optimizer steps [default 10]")
    system.add_argument("--report_to", choices=("none", "tensorboard"), default=None,
                        help="also write TensorBoard event files to OUTPUT_DIR/tensorboard [default none]")
    system.add_argument("--max_nonfinite_steps", type=int, default=None,
                        help="stop after this many non-finite losses in a row (each is skipped) [default 10]")
    system.add_argument("--stop_at_step", type=int, default=None,
                        help="end right after this step without a final save, as if the run crashed (to try --resume)")
    system.add_argument("--no_progress", action="store_true", default=None, help="no progress bar")
    system.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher; do not set by hand")
    return parser


def _positive(args, names: Sequence[str], allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise UsageError(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(args: argparse.Namespace) -> None:
    _positive(args, ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "log_every", "max_regions",
                     "max_nonfinite_steps", "synthetic_images", "stop_at_step"))
    _positive(args, ("weight_decay", "warmup_steps", "grad_clip", "num_workers", "save_every", "save_total_limit",
                     "num_hard_negatives", "long_weight", "short_weight", "region_weight", "hard_weight",
                     "min_lr_ratio"), allow_zero=True)
    if args.max_bad_fraction is not None and not 0 <= args.max_bad_fraction <= 1:
        raise UsageError(f"--max_bad_fraction must be in [0, 1], got {args.max_bad_fraction}")
    if args.min_lr_ratio is not None and args.min_lr_ratio > 1:
        raise UsageError(f"--min_lr_ratio must be in [0, 1], got {args.min_lr_ratio}")
    if is_default_experiment(args):
        extra = [name for name, value in vars(args).items()
                 if value is not None and name not in DEFAULT_EXPERIMENT_OPTIONS]
        if extra:
            raise UsageError(f"--{extra[0]} needs a training run (--data and --init); the embedded default takes only "
                             + ", ".join(f"--{o}" for o in DEFAULT_EXPERIMENT_OPTIONS if o != "local_rank"))
        return
    if args.data is None:
        raise UsageError("--data is required with --init (give neither for the embedded default experiment)")
    if args.init is None:
        raise UsageError("--init is required with --data: 'tiny' or a model folder")
    if args.synthetic_images is not None:
        raise UsageError("--synthetic_images applies to the embedded default only (no --data, no --init)")


def is_default_experiment(args: argparse.Namespace) -> bool:
    return args.data is None and args.init is None


def _pick(value, default):
    return default if value is None else value


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig`: the options given, the stage recipe for the rest."""
    stage = _pick(args.stage, 1)
    recipe = recipe_for(stage, args.init)
    return TrainConfig(
        stage=stage,
        model=ModelInit(init=args.init, gradient_checkpointing=bool(args.gradient_checkpointing)),
        data=DataConfig(paths=list(args.data), num_workers=args.num_workers,
                        max_regions=_pick(args.max_regions, 4), num_hard_negatives=_pick(args.num_hard_negatives, 10),
                        max_bad_fraction=_pick(args.max_bad_fraction, 0.01)),
        optim=OptimConfig(lr=_pick(args.lr, recipe.lr), weight_decay=_pick(args.weight_decay, recipe.weight_decay),
                          warmup_steps=_pick(args.warmup_steps, recipe.warmup_steps),
                          min_lr_ratio=_pick(args.min_lr_ratio, 0.0), grad_clip=_pick(args.grad_clip, 1.0)),
        loss=LossWeights(long=_pick(args.long_weight, 1.0), short=_pick(args.short_weight, 1.0),
                         region=_pick(args.region_weight, 0.1), hard=_pick(args.hard_weight, 0.5)),
        output_dir=_pick(args.output_dir, f"runs/stage{stage}"),
        epochs=_pick(args.epochs, 1),
        max_steps=args.max_steps,
        batch_size=_pick(args.batch_size, recipe.batch_size),
        grad_accum=_pick(args.grad_accum, 1),
        bf16=args.bf16,
        seed=_pick(args.seed, 42),
        deepspeed_config=args.deepspeed,
        force_deepspeed=args.deepspeed is not None,
        resume=args.resume,
        save_every=_pick(args.save_every, 0),
        save_total_limit=_pick(args.save_total_limit, 2),
        log_every=_pick(args.log_every, 10),
        report_to=_pick(args.report_to, "none"),
        max_nonfinite_steps=_pick(args.max_nonfinite_steps, 10),
        stop_at_step=args.stop_at_step,
        progress=not args.no_progress,
    )


def _precheck_paths(config: TrainConfig) -> None:
    """Fail on a missing --data / --init / --deepspeed path before any process group or model is made."""
    from fgclip.data.readers import DataPathError, expand_data_paths
    from fgclip.train.model_init import describe_init

    for path in expand_data_paths(config.data.paths):
        if not path.exists():
            raise DataPathError(f"data path not found: {path}")
    describe_init(config.model.init)
    if config.deepspeed_config and not os.path.isfile(config.deepspeed_config):
        raise UsageError(f"DeepSpeed config not found: {config.deepspeed_config}")


def _one_line(error: Exception) -> str:
    """The message on one line; an error re-raised from a data-loader worker carries a traceback, whose
    last line ("Type: message") is the message."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if "Original Traceback" in text:
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    launched_by_deepspeed = args.local_rank is not None
    # Imported here so that --help and usage errors stay fast and quiet.
    from fgclip.data.dataset import DataError
    from fgclip.data.readers import DataPathError
    from fgclip.model.conversion import CheckpointError
    from fgclip.train.checkpoint import ResumeError
    from fgclip.train.engine import ConfigError
    from fgclip.train.loop import TrainingError

    usage_errors = (UsageError, DataPathError, CheckpointError, ResumeError, ConfigError, DataError)
    try:
        validate(args)
        if is_default_experiment(args):
            from fgclip.train.default_experiment import run_from_args

            run_from_args(args, launched_by_deepspeed)
        else:
            from fgclip.train.loop import train

            config = config_from_args(args)
            _precheck_paths(config)
            train(config, launched_by_deepspeed=launched_by_deepspeed)
    except usage_errors as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        from fgclip.train.distributed import cleanup_quietly

        cleanup_quietly()
    return 0
