"""The optimisation values a run really uses, where each came from, and the adjustments that keep a run from
training at ~0 learning rate without a word.

Once the data size and the number of processes are known:

* a batch larger than the data set (per device x processes) is cut to fit, with a line;
* the total number of optimizer steps follows from `--max_steps` or from the epochs;
* a warm-up from the recipe that is not well below the run's length (more than a fifth of its steps) is
  shortened to a tenth of them, with a line; a warm-up the user chose (`--warmup_steps`, or set in a
  `TrainConfig`) is kept, with a warning when the run ends before the learning rate reaches `--lr`.

`format_plan` prints it as one block at start-up; `Plan.to_json` is stored in `train_config.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fgclip.errors import UserError
from fgclip.train.config import TrainConfig

WARMUP_SHARE_LIMIT = 0.2  # a warm-up longer than this share of the run is not "well below" it
WARMUP_SHARE_CAPPED = 0.1  # what such a warm-up is shortened to


@dataclass
class Plan:
    values: dict[str, object]  # name -> value, in print order
    sources: dict[str, str]  # name -> "--flag", "recipe tiny", "default", ...
    notes: list[str] = field(default_factory=list)  # adjustments and warnings, one line each
    steps_per_epoch: int = 0
    total_steps: int = 0

    def to_json(self) -> dict:
        return {
            "values": {name: {"value": value, "source": self.sources[name]} for name, value in self.values.items()},
            "notes": list(self.notes),
        }


def _source(config: TrainConfig, name: str) -> str:
    return config.sources.get(name, "set in the TrainConfig")


def make_plan(config: TrainConfig, num_samples: int, world_size: int) -> tuple[TrainConfig, Plan]:
    """The config with the adjusted batch and warm-up, and the plan that describes it."""
    notes: list[str] = []
    sources = {
        name: _source(config, name)
        for name in (
            "lr",
            "weight_decay",
            "warmup_steps",
            "batch_size",
            "grad_accum",
            "epochs",
            "max_steps",
            "min_lr_ratio",
            "grad_clip",
        )
    }
    if num_samples < world_size:
        raise UserError(f"{num_samples} records are too few for {world_size} processes (each needs at least one)")
    batch_size = config.batch_size
    if batch_size * world_size > num_samples:
        batch_size = num_samples // world_size
        notes.append(
            f"batch: {config.batch_size} per device x {world_size} process(es) is more than the "
            f"{num_samples} records; cut to {batch_size} per device"
        )
        sources["batch_size"] = f"cut to the data (was {config.batch_size}, {sources['batch_size']})"
    batches_per_epoch = num_samples // world_size // batch_size
    steps_per_epoch = batches_per_epoch // config.grad_accum
    if steps_per_epoch < 1:
        raise UserError(
            f"{batches_per_epoch} batches per epoch are fewer than --grad_accum {config.grad_accum}; "
            "lower --grad_accum or --batch_size"
        )
    if config.max_steps:
        total_steps = config.max_steps
        total_source = sources["max_steps"]
    else:
        total_steps = config.epochs * steps_per_epoch
        total_source = f"{config.epochs} epoch(s) x {steps_per_epoch} steps"
    warmup = config.optim.warmup_steps
    from_recipe = sources["warmup_steps"].startswith("recipe")
    if warmup > WARMUP_SHARE_LIMIT * total_steps:
        if not from_recipe:
            if warmup >= total_steps:
                notes.append(
                    f"warning: the warm-up ({warmup} steps, {sources['warmup_steps']}) is not shorter than "
                    f"the run's {total_steps} steps: the learning rate never reaches its peak "
                    f"{config.optim.lr:g}"
                )
        else:
            capped = max(1, round(WARMUP_SHARE_CAPPED * total_steps))
            notes.append(
                f"warm-up: {warmup} steps ({sources['warmup_steps']}) is not well below the run's "
                f"{total_steps} steps; shortened to {capped} ({WARMUP_SHARE_CAPPED:.0%} of the steps)"
            )
            sources["warmup_steps"] = (
                f"shortened to {WARMUP_SHARE_CAPPED:.0%} of the steps (was {warmup}, {sources['warmup_steps']})"
            )
            warmup = capped
    config = replace(config, batch_size=batch_size, optim=replace(config.optim, warmup_steps=warmup))
    global_batch = batch_size * world_size * config.grad_accum
    values = {
        "lr": config.optim.lr,
        "weight_decay": config.optim.weight_decay,
        "warmup_steps": warmup,
        "batch_size": batch_size,
        "global_batch": global_batch,
        "grad_accum": config.grad_accum,
        "epochs": None if config.max_steps else config.epochs,
        "max_steps": config.max_steps,
        "total_steps": total_steps,
        "min_lr_ratio": config.optim.min_lr_ratio,
        "grad_clip": config.optim.grad_clip,
    }
    sources["global_batch"] = f"{batch_size} per device x {world_size} process(es) x {config.grad_accum} accumulation"
    sources["total_steps"] = total_source
    if config.max_steps:
        sources["epochs"] = f"not used: --max_steps ({config.max_steps * global_batch / num_samples:.2f} passes)"
    return config, Plan(values, {name: sources[name] for name in values}, notes, steps_per_epoch, total_steps)


LABELS = {
    "lr": "lr (peak)",
    "weight_decay": "weight decay",
    "warmup_steps": "warm-up steps",
    "batch_size": "batch per device",
    "global_batch": "global batch",
    "grad_accum": "grad accumulation",
    "epochs": "epochs",
    "max_steps": "max steps",
    "total_steps": "total steps",
    "min_lr_ratio": "min lr ratio",
    "grad_clip": "grad clip",
}


def format_plan(plan: Plan, header: str) -> str:
    """The start-up block: one line per value with its source, then the adjustments."""
    lines = [header]
    for name, value in plan.values.items():
        shown = "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
        lines.append(f"  {LABELS[name]:<18} {shown:<10} {plan.sources[name]}")
    lines.extend(f"  {note}" for note in plan.notes)
    return "\n".join(lines)
