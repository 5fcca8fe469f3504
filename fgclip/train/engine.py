"""The optimisation engine: DeepSpeed ZeRO-2 across processes, or a plain AdamW loop in one process.

Both expose the same small interface to the training loop: `run(fn)` calls `fn` with the model to call
(the module, or the DeepSpeed engine around it) under the engine's precision and returns what it returns;
`forward(batch, loss_fn)` is that for an FG-CLIP batch; `backward`, `step` (True when the optimizer
stepped, i.e. at a gradient-accumulation boundary), `lr`, `save`/`load` of their resumable state, and
`module` (the model).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from fgclip.data.collate import Batch
from fgclip.errors import UserError
from fgclip.losses import FGCLIPLoss
from fgclip.train.config import SHIPPED_DEEPSPEED_CONFIG, OptimConfig
from fgclip.train.distributed import DistributedContext
from fgclip.train.step import LossOutput, compute_loss

PLAIN_STATE_FILE = "trainer_state.pt"
T = TypeVar("T")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices decay; biases, norms and temperatures (ndim < 2) do not (as CLIP)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, optim.weight_decay), lr=optim.lr, betas=optim.betas, eps=optim.eps)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up from 0, then cosine decay to `min_lr_ratio` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer, optim: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total_steps, optim.min_lr_ratio)
    )


def apply_optimisation(optimizer, scheduler, optim: OptimConfig) -> None:
    """After loading a checkpoint made with other values (`--resume_anyway`): use this run's lr and weight
    decay from the current step on (the schedule's shape, warm-up and length, is already this run's)."""
    scheduler.base_lrs = [optim.lr for _ in optimizer.param_groups]
    multipliers = [fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
    for index, (group, multiplier) in enumerate(zip(optimizer.param_groups, multipliers)):
        group["initial_lr"] = optim.lr
        group["lr"] = optim.lr * multiplier
        if index == 0:  # the decayed group (`parameter_groups` puts it first)
            group["weight_decay"] = optim.weight_decay
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def resolve_deepspeed_config(
    path: str | Path | None, batch_size: int, grad_accum: int, world_size: int, bf16: bool, grad_clip: float
) -> dict:
    """The DeepSpeed config with its "auto" values filled from the run's options."""
    path = Path(path) if path else SHIPPED_DEEPSPEED_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise UserError(f"DeepSpeed config not found: {path}") from error
    except json.JSONDecodeError as error:
        raise UserError(f"DeepSpeed config {path} is not valid JSON: {error}") from error
    for section in ("optimizer", "scheduler"):
        if section in config:  # the run builds AdamW + warm-up/cosine itself from --lr etc.
            raise UserError(f"{path} defines '{section}'; remove it (set --lr, --weight_decay, --warmup_steps)")
    auto = {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": batch_size * grad_accum * world_size,
        "gradient_clipping": grad_clip,
    }
    for key, value in auto.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
        elif config[key] != value:
            raise UserError(f'{path} sets {key}={config[key]} but the run\'s options give {value}; use "auto"')
    for precision, enabled in (("bf16", bf16), ("fp16", False)):
        section = config.setdefault(precision, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = enabled
    if config["fp16"]["enabled"]:
        raise UserError("fp16 is not supported (FG-CLIP training gave NaNs in fp16); use --bf16")
    config["bf16"]["enabled"] = bool(config["bf16"]["enabled"])
    if config["bf16"]["enabled"]:
        # DeepSpeed casts parameters only; the frozen long-text position table is a buffer and must follow
        # them, or it promotes the text tower's activations back to fp32.
        config.setdefault("data_types", {}).setdefault("buffer_dtype", "bf16")
    config.setdefault("steps_per_print", 10**9)  # the run logs itself
    config.setdefault("wall_clock_breakdown", False)
    return config


class PlainEngine:
    """One process, no DeepSpeed: AdamW, warm-up + cosine, gradient accumulation, optional bf16 autocast."""

    kind = "plain"

    def __init__(
        self, model: nn.Module, optim: OptimConfig, total_steps: int, grad_accum: int, device: torch.device, bf16: bool
    ):
        self.module = model.to(device)
        self.device, self.bf16, self.grad_accum = device, bf16, grad_accum
        self.grad_clip = optim.grad_clip
        self.optimizer = make_optimizer(model, optim)
        self.scheduler = make_scheduler(self.optimizer, optim, total_steps)
        self.micro_steps = 0
        self.skipped_nonfinite_grads = 0

    @property
    def input_dtype(self) -> torch.dtype | None:
        return None  # autocast casts inside

    def run(self, fn: Callable[[nn.Module], T]) -> T:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            return fn(self.module)

    def forward(self, batch: Batch, loss_fn: FGCLIPLoss) -> LossOutput:
        return self.run(lambda model: compute_loss(model, batch, loss_fn))

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> bool:
        """Count a micro-batch; at an accumulation boundary clip and step. True when the optimizer stepped.

        A step whose gradients are not finite is skipped (gradients zeroed) and counted.
        """
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum:
            return False
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.grad_clip if self.grad_clip else float("inf"))
        if torch.isfinite(norm):
            self.optimizer.step()
        else:  # a finite loss with inf/nan gradients (an overflow in backward): no update, and say so
            self.skipped_nonfinite_grads += 1
            print(
                f"non-finite gradient norm at optimizer step {self.micro_steps // self.grad_accum}: update skipped "
                f"({self.skipped_nonfinite_grads} in this run)",
                file=sys.stderr,
            )
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def save(self, directory: Path, client_state: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "micro_steps": self.micro_steps,
                "skipped_nonfinite_grads": self.skipped_nonfinite_grads,
                "client_state": client_state,
            },
            directory / PLAIN_STATE_FILE,
        )

    def load(self, directory: Path) -> dict:
        state = torch.load(directory / PLAIN_STATE_FILE, map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = state["micro_steps"]
        self.skipped_nonfinite_grads = state.get("skipped_nonfinite_grads", 0)  # absent from older checkpoints
        return state["client_state"]

    def apply_optimisation(self, optim: OptimConfig) -> None:
        apply_optimisation(self.optimizer, self.scheduler, optim)

    def fp32_model(self, checkpoint_dir: Path | None = None) -> nn.Module:
        return self.module


@contextlib.contextmanager
def _scalar_parameters_broadcast_by_us(model: nn.Module):
    """Work around DeepSpeed 0.19's start-up broadcast, which views every parameter as bytes and fails on
    0-dim ones (FG-CLIP's three temperatures: "self.dim() cannot be 0 to view Float as Byte").

    We broadcast those parameters from rank 0 ourselves and mark them with the attribute DeepSpeed's
    `_broadcast_model` uses to pass over parameters it must not broadcast (`ds_optim_param`, otherwise
    only read for OptimizedLinear LoRA offload); the mark is removed once the engine exists.
    """
    import torch.distributed as dist

    scalars = [p for p in model.parameters() if p.dim() == 0]
    for parameter in scalars:
        if dist.is_initialized():
            dist.broadcast(parameter.data, src=0)
        parameter.ds_optim_param = True
    try:
        yield
    finally:
        for parameter in scalars:
            del parameter.ds_optim_param


class DeepSpeedEngine:
    """DeepSpeed ZeRO (stage from the config, 2 as shipped) around the model, with a client AdamW."""

    kind = "deepspeed"

    def __init__(self, model: nn.Module, optim: OptimConfig, total_steps: int, ds_config: dict):
        import deepspeed

        optimizer = make_optimizer(model, optim)
        scheduler = make_scheduler(optimizer, optim, total_steps)
        # Buffers are never trained; keep their fp32 values for `final/` (bf16 runs cast them).
        self._fp32_buffers = {name: b.detach().clone() for name, b in model.named_buffers() if b.is_floating_point()}
        with _scalar_parameters_broadcast_by_us(model):
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
            )
        self.bf16 = bool(ds_config["bf16"]["enabled"])

    @property
    def module(self) -> nn.Module:
        return self.engine.module

    @property
    def input_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.bf16 else None  # DeepSpeed runs the module itself in bf16

    def run(self, fn: Callable[[nn.Module], T]) -> T:
        return fn(self.engine)  # DeepSpeed runs the module in its own precision

    def forward(self, batch: Batch, loss_fn: FGCLIPLoss) -> LossOutput:
        return self.run(lambda model: compute_loss(model, batch, loss_fn))

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        return boundary

    @property
    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def save(self, directory: Path, client_state: dict) -> None:
        self.engine.save_checkpoint(
            str(directory.parent), tag=directory.name, client_state=client_state, save_latest=False
        )

    def load(self, directory: Path) -> dict:
        path, client_state = self.engine.load_checkpoint(
            str(directory.parent), tag=directory.name, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint in {directory}")
        return client_state

    def apply_optimisation(self, optim: OptimConfig) -> None:
        apply_optimisation(self.optimizer, self.scheduler, optim)

    def fp32_model(self, checkpoint_dir: Path | None = None) -> nn.Module:
        """The model with fp32 weights: under bf16, rebuilt from the fp32 master copy in `checkpoint_dir`."""
        if not self.bf16:
            return self.module
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir.parent), tag=checkpoint_dir.name)
        model = copy.deepcopy(self.module).float()
        missing, unexpected = model.load_state_dict({**state, **self._fp32_buffers}, strict=False)
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        if set(missing) & trainable or unexpected:
            raise RuntimeError(
                f"fp32 weights do not fit the model (missing {sorted(set(missing) & trainable)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        return model


def build_engine(
    model: nn.Module,
    optim: OptimConfig,
    total_steps: int,
    context: DistributedContext,
    batch_size: int,
    grad_accum: int,
    bf16: bool,
    deepspeed_config: str | None,
):
    if context.use_deepspeed:
        model = model.to(context.device)
        ds_config = resolve_deepspeed_config(
            deepspeed_config, batch_size, grad_accum, context.world_size, bf16, optim.grad_clip
        )
        return DeepSpeedEngine(model, optim, total_steps, ds_config)
    return PlainEngine(model, optim, total_steps, grad_accum, context.device, bf16)
