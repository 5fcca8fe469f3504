"""Command line of `scripts/finetune_fashion.py`: parse once into a `FinetuneConfig`, run, map errors to exit codes.

Exit codes: 0 done; 2 bad usage, a missing or unusable path, a folder that is not a model, an incompatible
checkpoint, data in no supported layout or too many bad items (one line on stderr, never a traceback);
1 a run that could not go on (repeated non-finite losses); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fgclip.errors import UserError
from fgclip.train.cli import UsageError, _one_line, _Parser, _pick, _positive

TASK_HELP = {
    "retrieval": "cross-modal retrieval on FashionGen-style products (HDF5, FashionSAP info_data.json, Fashion-FINE "
    "annotation .json or .jsonl items)",
    "tgir": "text-guided image retrieval on FashionIQ-style triplets (captions/cap.<category>.<split>.json)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="finetune_fashion.py",
        description="Fashion-FINE finetuning of FG-CLIP (or CLIP) towers: global + local embeddings (one attention "
        "pooling layer shared by patches and words), focal contrastive loss and image-text matching with sampled "
        "hard negatives (--task retrieval), or the trained cross-attention composition of a reference image and a "
        "modification text (--task tgir). Runs as `python`, under `torchrun` and under the `deepspeed` launcher "
        "(ZeRO-2 whenever there is more than one process). Model selection uses the validation split only "
        "(--val or --val_fraction): OUTPUT_DIR/best is the best validation step, OUTPUT_DIR/final the last step.",
    )
    run = parser.add_argument_group("what to train")
    run.add_argument("--task", required=True, choices=("retrieval", "tgir"),
                     help="; ".join(f"{k}: {v}" for k, v in TASK_HELP.items()))
    run.add_argument("--data", required=True, nargs="+", metavar="PATH", help="training files of the task's layout")
    run.add_argument("--init", required=True, metavar="DIR",
                     help="an FG-CLIP folder of this project, a stock Hugging Face CLIP folder, an official FG-CLIP "
                     "release folder (Fashion-FINE parts are added), or a Fashion-FINE folder (continued as saved)")
    run.add_argument("--output_dir", required=True, help="run folder: metrics.jsonl, validation.jsonl, checkpoints/, "
                     "best/, final/, summary.json")
    run.add_argument("--overwrite_output_dir", action="store_true",
                     help="write into an --output_dir that holds files this command did not write")
    run.add_argument("--images", default=None, metavar="DIR",
                     help="image root for relative names [default: the release layout's images/ folder next to the "
                     "data file's folder when there is one, else the data file's folder]")
    val = parser.add_argument_group("validation (model selection; never give a test split)")
    val.add_argument("--val", nargs="+", default=None, metavar="PATH", help="validation files of the task's layout")
    val.add_argument("--val_fraction", type=float, default=None,
                     help="without --val: hold out this share of the training products (retrieval) or target images "
                     "(tgir) for validation [default 0: no selection, best/ is not written]")
    val.add_argument("--eval_every", type=int, default=None, help="optimizer steps between validations [default: "
                     "once per epoch, and at the end]")
    model = parser.add_argument_group("Fashion-FINE parts (when --init is not a Fashion-FINE folder)")
    model.add_argument("--local_pooling", action=argparse.BooleanOptionalAction, default=None,
                       help="mix the attention-pooled local vector into the embeddings; --no-local_pooling is the "
                       "global-only model [default on]")
    model.add_argument("--image_local_ratio", type=float, default=None, help="r for images [default 0.05]")
    model.add_argument("--text_local_ratio", type=float, default=None, help="r for texts [default 0.25]")
    model.add_argument("--fusion_layers", type=int, default=None,
                       help="cross-attention blocks under the matching head and the composition [default 2]")
    loss = parser.add_argument_group("loss")
    loss.add_argument("--contrastive_weight", type=float, default=None, help="contrastive term [default 1]")
    loss.add_argument("--matching_weight", type=float, default=None,
                      help="image-text matching term, retrieval only [recipe: 1 retrieval, 0 tgir]")
    loss.add_argument("--focal_gamma", type=float, default=None, help="focal exponent [recipe: 2 retrieval, 0 tgir]")
    loss.add_argument("--focal_alpha", type=float, default=None, help="focal weight alpha_f [recipe: 0.25 retrieval, "
                      "1 tgir]")
    length = parser.add_argument_group("length and batch")
    length.add_argument("--epochs", type=int, default=None, help="passes over the data [recipe: 30 retrieval, 10 tgir]")
    length.add_argument("--max_steps", type=int, default=None, help="optimizer steps; overrides --epochs")
    length.add_argument("--batch_size", type=int, default=None,
                        help="products (retrieval) or triplets (tgir) per device per micro-batch [recipe: 64, 16]")
    length.add_argument("--grad_accum", type=int, default=None, help="micro-batches per optimizer step [default 1]")
    optim = parser.add_argument_group("optimizer (AdamW, linear warm-up then cosine)")
    optim.add_argument("--lr", type=float, default=None, help="peak learning rate [recipe: 1e-5 retrieval, 3e-5 tgir]")
    optim.add_argument("--weight_decay", type=float, default=None, help="AdamW weight decay [recipe: 0.02, 0.3]")
    optim.add_argument("--warmup_steps", type=int, default=None, help="linear warm-up steps [default: one epoch, as "
                       "Fashion-FINE]")
    optim.add_argument("--min_lr_ratio", type=float, default=None,
                       help="cosine floor as a share of --lr [recipe: 0.1 retrieval (1e-6), 0.0033 tgir (1e-7)]")
    optim.add_argument("--grad_clip", type=float, default=None, help="gradient-norm clip, 0 for none [default 1.0]")
    system = parser.add_argument_group("data, precision, distribution, checkpoints, logging")
    system.add_argument("--num_workers", type=int, default=None,
                        help="data-loader processes per rank [default: 0 with <= 2 cores per rank, else cores - 1, max 8]")
    system.add_argument("--max_bad_fraction", type=float, default=None,
                        help="stop when more than this share of items is unusable (skipped while reading: missing "
                        "image, no category, empty text; or undecodable while training) [default 0.01]")
    system.add_argument("--gradient_checkpointing", action="store_true", default=None,
                        help="recompute the towers' activations in the backward pass to save memory")
    system.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 training [default: on with a bf16 GPU, off on CPU]")
    system.add_argument("--seed", type=int, default=None, help="seed of data order, hard negatives and --val_fraction "
                        "[default 42]")
    system.add_argument("--deepspeed", nargs="?", const="", default=None, metavar="CONFIG",
                        help="use DeepSpeed even in one process, with this config [default: scripts/zero2.json]")
    system.add_argument("--resume", default=None, metavar="latest|PATH",
                        help="continue from the newest checkpoint of --output_dir, or from a checkpoint folder")
    system.add_argument("--save_every", type=int, default=None, help="checkpoint every N optimizer steps; 0: at the "
                        "end (and at each new best) [default 0]")
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


def validate(args: argparse.Namespace) -> None:
    _positive(args, ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "log_every", "max_nonfinite_steps",
                     "stop_at_step", "eval_every", "fusion_layers"))
    _positive(args, ("weight_decay", "warmup_steps", "grad_clip", "num_workers", "save_every", "save_total_limit",
                     "contrastive_weight", "matching_weight", "focal_gamma", "focal_alpha", "min_lr_ratio"),
              allow_zero=True)
    for name in ("max_bad_fraction", "image_local_ratio", "text_local_ratio", "min_lr_ratio"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise UsageError(f"--{name} must be in [0, 1], got {value}")
    if args.val_fraction is not None and not 0 <= args.val_fraction < 1:
        raise UsageError(f"--val_fraction must be in [0, 1), got {args.val_fraction}")
    if args.val and args.val_fraction:
        raise UsageError("give --val or --val_fraction, not both")
    if args.task == "tgir" and args.matching_weight:
        raise UsageError("--matching_weight applies to --task retrieval (text-guided finetuning has no matching loss)")


def config_from_args(args: argparse.Namespace):
    """The run's `FinetuneConfig`: the options given, the task's recipe for the rest."""
    from fgclip.fashion.losses import FashionLossConfig
    from fgclip.fashion.train import RECIPES, FashionModelSettings, FinetuneConfig
    from fgclip.train.config import OptimConfig

    recipe = RECIPES[args.task]
    return FinetuneConfig(
        task=args.task,
        init=args.init,
        data=list(args.data),
        val=list(args.val or []),
        val_fraction=_pick(args.val_fraction, 0.0),
        images=args.images,
        output_dir=args.output_dir,
        model=FashionModelSettings(local_pooling=args.local_pooling, image_local_ratio=args.image_local_ratio,
                                   text_local_ratio=args.text_local_ratio, fusion_layers=args.fusion_layers,
                                   gradient_checkpointing=bool(args.gradient_checkpointing)),
        loss=FashionLossConfig(contrastive_weight=_pick(args.contrastive_weight, 1.0),
                               matching_weight=_pick(args.matching_weight, recipe.matching_weight),
                               focal_gamma=_pick(args.focal_gamma, recipe.focal_gamma),
                               focal_alpha=_pick(args.focal_alpha, recipe.focal_alpha)),
        optim=OptimConfig(lr=_pick(args.lr, recipe.lr), weight_decay=_pick(args.weight_decay, recipe.weight_decay),
                          warmup_steps=_pick(args.warmup_steps, -1), min_lr_ratio=_pick(args.min_lr_ratio,
                                                                                        recipe.min_lr_ratio),
                          grad_clip=_pick(args.grad_clip, 1.0)),
        epochs=_pick(args.epochs, recipe.epochs),
        max_steps=args.max_steps,
        batch_size=_pick(args.batch_size, recipe.batch_size),
        grad_accum=_pick(args.grad_accum, 1),
        eval_every=_pick(args.eval_every, 0),
        bf16=args.bf16,
        seed=_pick(args.seed, 42),
        num_workers=args.num_workers,
        max_bad_fraction=_pick(args.max_bad_fraction, 0.01),
        deepspeed_config=args.deepspeed or None,
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


def _prepare(config, overwrite: bool) -> None:
    """Fail on a missing path or an output folder this command may not write, before any heavy work."""
    import os

    from fgclip.fashion.data import DataPathError
    from fgclip.fashion.train import OWNED_OUTPUTS
    from fgclip.outputs import prepare_output_dir

    for path in config.data + config.val:
        if not os.path.exists(path):
            raise DataPathError(f"data path not found: {path}")
    if config.images and not os.path.isdir(config.images):
        raise DataPathError(f"--images {config.images} is not a folder")
    if not os.path.isdir(config.init):
        raise DataPathError(f"--init {config.init}: no such folder")
    if config.deepspeed_config and not os.path.isfile(config.deepspeed_config):
        raise UsageError(f"DeepSpeed config not found: {config.deepspeed_config}")
    prepare_output_dir(config.output_dir, inputs=[*config.data, *config.val, config.init, config.images],
                       owned=OWNED_OUTPUTS, overwrite=overwrite, overwrite_flag="--overwrite_output_dir",
                       option="--output_dir", what="files")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    launched_by_deepspeed = args.local_rank is not None
    try:
        validate(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Imported here so that --help and usage errors stay fast and quiet.
    from fgclip.fashion.train import finetune
    from fgclip.train.distributed import cleanup_quietly, setup_distributed
    from fgclip.train.runner import TrainingError

    try:
        config = config_from_args(args)
        _prepare(config, args.overwrite_output_dir)  # on every rank, before any process group exists
        finetune(config, setup_distributed(config.force_deepspeed, launched_by_deepspeed))
    except UserError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        cleanup_quietly()
    return 0
