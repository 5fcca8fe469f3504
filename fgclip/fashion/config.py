"""The finetuning run's configuration, which is also its command line (`fgclip.cli`): each group of options is
a dataclass, `FinetuneConfig` is all of them. Standard library only, so `--help` answers before torch loads.

A value left unset (None) takes the task's recipe, Fashion-FINE's published configs (`RECIPES`);
`FinetuneConfig.resolved()` fills them in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

from fgclip.cli import fraction, non_negative_int, option, output_dir_option, positive_float, positive_int
from fgclip.train.config import TrainingOptions, format_number, recipe_values

if TYPE_CHECKING:
    from fgclip.fashion.losses import FashionLossConfig
    from fgclip.train.config import OptimConfig

TASKS = ("retrieval", "tgir")


@dataclass(frozen=True)
class FashionRecipe:
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    min_lr_ratio: float
    contrastive_weight: float
    matching_weight: float
    focal_gamma: float
    focal_alpha: float


# Fashion-FINE's configs (batch size per GPU; min_lr_ratio: the cosine floor over the peak lr): retrieval with focal
# contrastive + matching, text-guided retrieval with plain contrastive. Warm-up: one epoch.
RECIPES = {  # values in `FashionRecipe`'s field order
    "retrieval": FashionRecipe(1e-5, 0.02, 64, 30, 0.1, 1.0, 1.0, 2.0, 0.25),
    "tgir": FashionRecipe(3e-5, 0.3, 16, 10, 1e-7 / 3e-5, 1.0, 0.0, 0.0, 1.0),
}


def _recipe(name: str) -> str:
    """'recipe: <value per task>' for `--help`, quoted from `RECIPES`."""
    return f"recipe: {recipe_values(RECIPES, name)}"


@dataclass(kw_only=True)
class RunOptions:
    task: Literal["retrieval", "tgir"] = option(
        "retrieval: cross-modal retrieval on FashionGen-style products (HDF5, FashionSAP info_data.json, "
        "Fashion-FINE annotation .json or .jsonl items); tgir: text-guided image retrieval on FashionIQ-style "
        "triplets (captions/cap.<category>.<split>.json)"
    )
    data: list[str] = option("training files of the task's layout", metavar="PATH")
    init: str = option(
        "an FG-CLIP folder of this project, a stock Hugging Face CLIP folder, an official FG-CLIP "
        "release folder (Fashion-FINE parts are added), or a Fashion-FINE folder (continued as saved)",
        metavar="DIR",
    )
    output_dir: str = output_dir_option(
        "run folder: metrics.jsonl, validation.jsonl, checkpoints/, best/, final/, summary.json"
    )
    overwrite_output_dir: bool = option(
        "replace the run in --output_dir, or write into a folder that holds files this command did not write", False
    )
    images: str | None = option(
        "image root for relative names (default: the release layout's images/ folder next "
        "to the data file's folder when there is one, else the data file's folder)",
        None,
        metavar="DIR",
    )


@dataclass(kw_only=True)
class ValidationOptions:
    val: list[str] = option("validation files of the task's layout", default_factory=list, metavar="PATH")
    val_fraction: float = option(
        "without --val: hold out this share of the training products (retrieval) or target "
        "images (tgir) for validation (0: no selection, best/ is not written)",
        0.0,
        type=fraction,
    )
    eval_every: int = option(
        "optimizer steps between validations (0: once per epoch, and at the end)", 0, type=non_negative_int
    )


@dataclass(kw_only=True)
class FashionModelSettings:
    """Set when the Fashion-FINE parts are created on towers; a Fashion-FINE `--init` keeps its own."""

    local_pooling: bool | None = option(
        "mix the attention-pooled local vector into the embeddings; --no_local_pooling "
        "is the global-only model (default: on, or the folder's)",
        None,
    )
    image_local_ratio: float | None = option("r for images (default 0.05)", None, type=fraction)
    text_local_ratio: float | None = option("r for texts (default 0.25)", None, type=fraction)
    fusion_layers: int | None = option(
        "cross-attention blocks under the matching head and the composition (default 2)", None, type=positive_int
    )
    gradient_checkpointing: bool = option(
        "recompute the towers' activations in the backward pass to save memory", False
    )


@dataclass(kw_only=True)
class RecipeOptions:
    """Unset values take the task's recipe (`RECIPES`)."""

    contrastive_weight: float | None = option(f"contrastive term ({_recipe('contrastive_weight')})", None, type=float)
    matching_weight: float | None = option(
        f"image-text matching term, retrieval only ({_recipe('matching_weight')})", None, type=float
    )
    focal_gamma: float | None = option(f"focal exponent ({_recipe('focal_gamma')})", None, type=float)
    focal_alpha: float | None = option(f"focal weight alpha_f ({_recipe('focal_alpha')})", None, type=float)
    epochs: int | None = option(f"passes over the data ({_recipe('epochs')})", None, type=positive_int)
    max_steps: int | None = option("optimizer steps; overrides --epochs", None, type=positive_int)
    batch_size: int | None = option(
        f"products (retrieval) or triplets (tgir) per device per micro-batch ({_recipe('batch_size')})",
        None,
        type=positive_int,
    )
    lr: float | None = option(f"peak learning rate ({_recipe('lr')})", None, type=positive_float)
    weight_decay: float | None = option(f"AdamW weight decay ({_recipe('weight_decay')})", None, type=float)
    warmup_steps: int | None = option(
        "linear warm-up steps (default: one epoch, as Fashion-FINE)", None, type=non_negative_int
    )
    min_lr_ratio: float | None = option(
        f"cosine floor as a share of --lr ({_recipe('min_lr_ratio')}; floors of "
        + ", ".join(f"{format_number(recipe.lr * recipe.min_lr_ratio)} {task}" for task, recipe in RECIPES.items())
        + ")",
        None,
        type=fraction,
    )
    grad_clip: float = option("gradient-norm clip, 0 for none", 1.0, type=float)


@dataclass(kw_only=True)
class SystemOptions(TrainingOptions):
    num_workers: int | None = option(
        "data-loader processes per rank (default: 0 with <= 2 cores per rank, else cores - 1, max 8)",
        None,
        type=non_negative_int,
    )
    max_bad_fraction: float = option(
        "stop when more than this share of items is unusable: items skipped while reading (missing image, no "
        "category, empty text) are judged at once; images undecodable while training by the pretraining rule "
        "(after 1,000 items with 99.9%% confidence, or after a whole pass)",
        0.01,
        type=fraction,
    )
    deterministic: bool | None = option(
        "deterministic kernels: same seed and arguments, same weights; a resumed run "
        "reaches the uninterrupted one's weights (default: on CPU, off on GPU)",
        None,
    )
    seed: int = option("seed of data order, hard negatives and --val_fraction", 42)
    deepspeed: str | None = option(
        "use DeepSpeed even in one process, with this config (alone: the shipped fgclip/train/zero2.json)",
        None,
        nargs="?",
        const="",
        metavar="CONFIG",
    )
    resume: str | None = option(
        "continue from the newest checkpoint of --output_dir, or from a checkpoint folder", None, metavar="latest|PATH"
    )
    resume_anyway: bool = option(
        "resume although the data, model or optimisation values differ from the "
        "checkpoint's run (the differences are printed)",
        False,
    )
    save_every: int = option(
        "checkpoint every N optimizer steps; 0: at the end (and at each new best)", 0, type=non_negative_int
    )
    save_total_limit: int = option("checkpoints kept", 2, type=positive_int)
    stop_at_step: int | None = option(
        "end right after this step without a final save, as if the run crashed (to try --resume)",
        None,
        type=positive_int,
    )
    local_rank: int | None = option("set by the deepspeed launcher; do not set by hand", None)


@dataclass(kw_only=True)
class FinetuneConfig(SystemOptions, RecipeOptions, FashionModelSettings, ValidationOptions, RunOptions):
    """One finetuning run: every option group; `resolved()` fills the recipe's values."""

    def resolved(self) -> FinetuneConfig:
        """This config with every unset recipe value taken from the task's recipe."""
        recipe = RECIPES[self.task]
        unset = {item.name: getattr(recipe, item.name) for item in fields(recipe) if getattr(self, item.name) is None}
        return replace(self, **unset)

    @property
    def loss(self) -> FashionLossConfig:
        from fgclip.fashion.losses import FashionLossConfig

        return FashionLossConfig(self.contrastive_weight, self.matching_weight, self.focal_gamma, self.focal_alpha)

    def optim(self, steps_per_epoch: int) -> OptimConfig:
        """The optimizer settings; the warm-up is one epoch unless --warmup_steps says otherwise."""
        from fgclip.train.config import OptimConfig

        warmup = self.warmup_steps if self.warmup_steps is not None else steps_per_epoch
        return OptimConfig(
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=warmup,
            min_lr_ratio=self.min_lr_ratio,
            grad_clip=self.grad_clip,
        )

    @property
    def deepspeed_config(self) -> str | None:
        return self.deepspeed or None

    @property
    def force_deepspeed(self) -> bool:
        return self.deepspeed is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


OPTION_GROUPS = (
    (RunOptions, "what to train"),
    (ValidationOptions, "validation (model selection; never give a test split)"),
    (FashionModelSettings, "Fashion-FINE parts (when --init is not a Fashion-FINE folder)"),
    (RecipeOptions, "loss, length and optimizer (AdamW, linear warm-up then cosine)"),
    (SystemOptions, "data, precision, distribution, checkpoints, logging"),
)
