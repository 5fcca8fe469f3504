"""Command line of `scripts/pretrain_fgclip.py`: parse once into a `TrainConfig`, run, map errors to exit codes.

Exit codes: 0 done; 2 bad usage, a missing or unusable path, an output folder that holds another run, an
incompatible checkpoint, or too many bad records (one line on stderr, never a traceback); 1 a run that could
not go on (repeated non-finite losses); 143 stopped by SIGTERM after saving a checkpoint; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fgclip.errors import UserError
from fgclip.losses import LossWeights
from fgclip.train.config import SHIPPED_DEEPSPEED_CONFIG, DataConfig, ModelInit, OptimConfig, TrainConfig

DEFAULT_EXPERIMENT_OPTIONS = ("output_dir", "seed", "num_workers", "report_to", "bf16", "deepspeed", "log_every",
                              "no_progress", "synthetic_images", "max_steps", "local_rank", "deterministic",
                              "overwrite_output_dir")
BAD_RECORD_RULE = (
    "Bad records (malformed JSON, invalid box, empty caption, missing or unreadable image) are skipped, "
    "replaced in their batch by a random usable record, and counted once each by reason. The run stops only on "
    "evidence: after at least 1,000 records, when the one-sided 99.9%% lower (Wilson) bound of the bad share is "
    "above --max_bad_fraction; and at the end of each pass over the data, when the bad share of the pass is "
    "above it (so 3 bad of 400 at 1%% completes; 40 of 400 stops at the end of the first pass). A stopping run "
    "saves a checkpoint, prints one line with the counts by reason and examples, and exits with code 2."
)


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
                     "FineHARD files, read directly), or webdataset .tar shards; folders (their .jsonl/.json/.tar "
                     "files, e.g. FineHARD's jsonfiles/), glob patterns ('jsonfiles/*.json') and brace patterns "
                     "('shards/shard-{000000..000099}.tar') allowed; make shards with python -m fgclip.data.shards")
    run.add_argument("--images", default=None, metavar="DIR",
                     help="root of relative image paths [default: the folder of each record file]; FineHARD f_path "
                     "values lose their 'grit-20m/data-12m/' prefix first, as the official loader does. A record "
                     "whose image is missing there is a counted bad record")
    run.add_argument("--init", default=None, metavar="tiny|DIR",
                     help="'tiny' (a small model from scratch, for CPU), a stock Hugging Face CLIP folder, an FG-CLIP "
                     "folder of this project, or an official FG-CLIP release folder. It also picks the recipe (the "
                     "defaults marked [recipe]): the one recorded in a final/ folder this script wrote, else the "
                     "published FG-CLIP recipe for CLIP-size models (vision width >= 768) and the tiny recipe for "
                     "'tiny' and smaller models. The start-up block prints every value and where it came from")
    run.add_argument("--output_dir", default=None,
                     help="run folder: train_config.json, metrics.jsonl, checkpoints/, final/, summary.json "
                     "[default runs/stage<N>, or runs/default_experiment for the embedded default]. A folder holding "
                     "a run is refused unless --resume or --overwrite_output_dir")
    run.add_argument("--overwrite_output_dir", action="store_true", default=None,
                     help="replace the run in --output_dir: its checkpoints, metrics, TensorBoard events and final/ are "
                     "removed first (files the trainer did not write are kept)")
    length = parser.add_argument_group("length and batch")
    length.add_argument("--epochs", type=int, default=None, help="passes over the data [default 1]")
    length.add_argument("--max_steps", type=int, default=None,
                        help="optimizer steps; overrides --epochs (embedded default: steps of each stage)")
    length.add_argument("--batch_size", type=int, default=None,
                        help="images per device per micro-batch [recipe: 384 stage 1, 512 stage 2; tiny 32]; cut "
                        "(with a line) when it is larger than the data set")
    length.add_argument("--grad_accum", type=int, default=None, help="micro-batches per optimizer step [default 1]")
    optim = parser.add_argument_group("optimizer (AdamW, linear warm-up then cosine)")
    optim.add_argument("--lr", type=float, default=None, help="peak learning rate [recipe: 1e-4 stage 1, 1e-6 stage 2; "
                       "tiny 1e-3 / 1e-3]")
    optim.add_argument("--weight_decay", type=float, default=None, help="AdamW weight decay on matrices [recipe: 0.001; tiny 0.01]")
    optim.add_argument("--warmup_steps", type=int, default=None,
                       help="linear warm-up steps [recipe: 200; tiny 50 / 20]; a recipe warm-up longer than a fifth "
                       "of the run is shortened to a tenth of it (with a line)")
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
                      help="the share of bad records the data may have [default 0.01]. " + BAD_RECORD_RULE)
    data.add_argument("--max_regions", type=int, default=None, help="boxes used per image in stage 2 [default 4]")
    data.add_argument("--region_choice", choices=("first", "random"), default=None,
                      help="which boxes of a record with more than --max_regions: the first ones, as FG-CLIP's "
                      "official stage-2 loader does, or a random draw per sample [default first]")
    data.add_argument("--short_caption_prefix", default=None, metavar="TEXT",
                      help="put before the short caption of official FineHARD items, as the official loader does "
                      "[default 'a photo of '; '' for none]; this project's records are used as written. The other "
                      "official rules always hold: each box is contrasted with its short or long expression at "
                      "random, hard negatives are a box's short_expr_negs values where flag_short_neg is 1, a box "
                      "score (5th value) is dropped")
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
    system.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                        help="deterministic kernels, so the same seed and arguments give bitwise the same weights and "
                        "a resumed run the uninterrupted run's [default: on for CPU, off for GPUs]. On CPU they cost "
                        "little; on GPUs they also set CUBLAS_WORKSPACE_CONFIG and turn off cuDNN autotuning, and "
                        "RoIAlign's backward runs without atomics (see benchmarks/determinism.py for the cost)")
    system.add_argument("--deepspeed", nargs="?", const=str(SHIPPED_DEEPSPEED_CONFIG), default=None, metavar="CONFIG",
                        help="use DeepSpeed even in one process, with this config [default config: scripts/zero2.json, "
                        "ZeRO-2 as in the FG-CLIP release]; with several processes DeepSpeed is always used")
    system.add_argument("--resume", default=None, metavar="latest|PATH",
                        help="continue from the newest checkpoint of --output_dir (none yet: start from scratch, "
                        "and say so), or from a checkpoint folder. The run must be the same run: data files and "
                        "sizes, model, stage and optimisation values are checked (one line names a difference)")
    system.add_argument("--resume_anyway", action="store_true", default=None,
                        help="resume although data, model or optimisation values differ from the checkpoint's; the "
                        "differences are printed and recorded in train_config.json (processes, batch size and "
                        "accumulation can never change)")
    system.add_argument("--save_every", type=int, default=None, help="checkpoint every N optimizer steps; 0: at the end "
                        "only [default 0]")
    system.add_argument("--save_total_limit", type=int, default=None, help="checkpoints kept [default 2]")
    system.add_argument("--log_every", type=int, default=None, help="log every N optimizer steps [default 10]")
    system.add_argument("--report_to", choices=("none", "tensorboard"), default=None,
                        help="also write TensorBoard event files to OUTPUT_DIR/tensorboard [default none]")
    system.add_argument("--max_nonfinite_steps", type=int, default=None,
                        help="stop after this many non-finite losses in a row (each is skipped) [default 10]")
    system.add_argument("--stop_at_step", type=int, default=None,
                        help="end right after this step without a final save, as if the run crashed (to try --resume). "
                        "SIGTERM (SLURM, Kubernetes, the launchers) instead finishes the step, saves a checkpoint, "
                        "prints where and exits with code 143; --resume latest continues")
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
    if args.overwrite_output_dir and args.resume:
        raise UsageError("--overwrite_output_dir and --resume contradict each other: replace the run or continue it")
    if args.resume_anyway and not args.resume:
        raise UsageError("--resume_anyway needs --resume")
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


def _pick(args, name: str, default, sources: dict, source: str = "default"):
    """The flag's value when given (source "--name"), else `default` (source `source`)."""
    value = getattr(args, name)
    if value is None:
        sources[name] = source
        return default
    sources[name] = f"--{name}"
    return value


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig`: the options given, the recipe of the model and stage for the rest."""
    from fgclip.train.recipes import choose_recipe

    stage = args.stage or 1
    choice = choose_recipe(args.init, stage)
    recipe = choice.recipe
    of_recipe = f"recipe {choice.name}"
    sources: dict[str, str] = {"recipe": choice.reason}
    optim = OptimConfig(lr=_pick(args, "lr", recipe.lr, sources, of_recipe),
                        weight_decay=_pick(args, "weight_decay", recipe.weight_decay, sources, of_recipe),
                        warmup_steps=_pick(args, "warmup_steps", recipe.warmup_steps, sources, of_recipe),
                        min_lr_ratio=_pick(args, "min_lr_ratio", 0.0, sources),
                        grad_clip=_pick(args, "grad_clip", 1.0, sources))
    batch_size = _pick(args, "batch_size", recipe.batch_size, sources, of_recipe)
    grad_accum = _pick(args, "grad_accum", 1, sources)
    epochs = _pick(args, "epochs", 1, sources)
    max_steps = _pick(args, "max_steps", None, sources, "not set")
    return TrainConfig(
        stage=stage,
        model=ModelInit(init=args.init, gradient_checkpointing=bool(args.gradient_checkpointing)),
        data=DataConfig(paths=list(args.data), num_workers=args.num_workers,
                        max_regions=4 if args.max_regions is None else args.max_regions,
                        num_hard_negatives=10 if args.num_hard_negatives is None else args.num_hard_negatives,
                        max_bad_fraction=0.01 if args.max_bad_fraction is None else args.max_bad_fraction,
                        images=args.images, region_choice=args.region_choice or "first",
                        finehard_short_prefix="a photo of " if args.short_caption_prefix is None
                        else args.short_caption_prefix),
        optim=optim,
        loss=LossWeights(long=1.0 if args.long_weight is None else args.long_weight,
                         short=1.0 if args.short_weight is None else args.short_weight,
                         region=0.1 if args.region_weight is None else args.region_weight,
                         hard=0.5 if args.hard_weight is None else args.hard_weight),
        output_dir=args.output_dir or f"runs/stage{stage}",
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        bf16=args.bf16,
        seed=42 if args.seed is None else args.seed,
        deepspeed_config=args.deepspeed,
        force_deepspeed=args.deepspeed is not None,
        resume=args.resume,
        save_every=0 if args.save_every is None else args.save_every,
        save_total_limit=2 if args.save_total_limit is None else args.save_total_limit,
        log_every=10 if args.log_every is None else args.log_every,
        report_to=args.report_to or "none",
        max_nonfinite_steps=10 if args.max_nonfinite_steps is None else args.max_nonfinite_steps,
        stop_at_step=args.stop_at_step,
        progress=not args.no_progress,
        deterministic=args.deterministic,
        overwrite_output_dir=bool(args.overwrite_output_dir),
        resume_anyway=bool(args.resume_anyway),
        recipe=choice.name,
        sources=sources,
    )


def _precheck_paths(args: argparse.Namespace) -> None:
    """Fail on a missing --data / --init / --images / --deepspeed path, or an --output_dir that is a file,
    before any process group or model is made."""
    from fgclip.data.readers import DataPathError, expand_data_paths
    from fgclip.outputs import OutputError
    from fgclip.train.model_init import describe_init

    for path in expand_data_paths(args.data):
        if not path.exists():
            raise DataPathError(f"data path not found: {path}")
    describe_init(args.init)
    if args.images is not None and not os.path.isdir(args.images):
        raise DataPathError(f"--images {args.images}: no such folder")
    if args.deepspeed and not os.path.isfile(args.deepspeed):
        raise UsageError(f"DeepSpeed config not found: {args.deepspeed}")
    if args.output_dir and os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise OutputError(f"--output_dir {args.output_dir} is a file; give a folder (it is created when missing)")


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


def _says_it_here(error: Exception) -> bool:
    """An error every rank raises alike (a stop all ranks agreed on) is printed by rank 0 only."""
    return not getattr(error, "every_rank", False) or os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    launched_by_deepspeed = args.local_rank is not None
    # Imported here so that --help and usage errors stay fast and quiet.
    from fgclip.train.loop import TrainingError
    from fgclip.train.preemption import EXIT_CODE as TERMINATED_EXIT_CODE
    from fgclip.train.preemption import Terminated

    try:
        validate(args)
        if is_default_experiment(args):
            from fgclip.train.default_experiment import run_from_args

            run_from_args(args, launched_by_deepspeed)
        else:
            from fgclip.train.loop import train

            _precheck_paths(args)
            train(config_from_args(args), launched_by_deepspeed=launched_by_deepspeed)
    except UserError as error:
        if _says_it_here(error):
            print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except Terminated as stopped:
        if _says_it_here(stopped):
            print(str(stopped), file=sys.stderr)
        return TERMINATED_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        from fgclip.train.distributed import cleanup_quietly

        cleanup_quietly()
    return 0
