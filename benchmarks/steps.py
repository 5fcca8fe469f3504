"""Training steps to time: FG-CLIP's (the trainer's `compute_loss`) and open_clip's (its model + `ClipLoss`).

Both do exactly what a single-process trainer does per step, with the same options:
`zero_grad` -> autocast (bf16 on GPU) forward + loss -> backward -> clip the gradient norm to 1 ->
AdamW step (the trainer's decay groups: matrices decay, biases/norms/temperatures do not; `fused=True`
on CUDA). open_clip's step also clamps its temperature after the update, as open_clip_train does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.settings import BenchSettings
from fgclip.data.collate import Batch
from fgclip.losses import FGCLIPLoss
from fgclip.model import FGCLIPConfig
from fgclip.model.flops import train_step_flops
from fgclip.train.config import stage_loss_weights
from fgclip.train.engine import parameter_groups
from fgclip.train.step import compute_loss

LEARNING_RATE = 1e-5  # small, so repeated steps on one batch leave the weights sane
WEIGHT_DECAY = 0.001
GRAD_CLIP = 1.0


def make_adamw(model: nn.Module, settings: BenchSettings, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the trainer's parameter groups; `fused` defaults to on for CUDA."""
    fused = settings.on_gpu if fused is None else fused
    return torch.optim.AdamW(parameter_groups(model, WEIGHT_DECAY), lr=LEARNING_RATE, fused=fused or None)


def _clip_and_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], GRAD_CLIP)
    optimizer.step()


class FGCLIPStep:
    """One FG-CLIP training step of `stage` on a fixed batch (call it to run the step)."""

    def __init__(
        self,
        model: nn.Module,
        batch: Batch,
        stage: int,
        settings: BenchSettings,
        fused: bool | None = None,
        module: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        short_text_groups: int = 1,
    ):
        self.model = model  # what is called (possibly `torch.compile`d)
        self.module = module or model  # whose parameters are optimised
        self.batch, self.settings = batch, settings
        self.loss_fn = FGCLIPLoss(stage_loss_weights(stage))
        self.optimizer = optimizer or make_adamw(self.module, settings, fused)
        self.short_text_groups = short_text_groups  # FGCLIPConfig's length-group lever, for this step only
        self.last_loss: torch.Tensor | None = None

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        config = self.module.config
        usual, config.short_text_groups = config.short_text_groups, self.short_text_groups
        try:
            with self.settings.autocast():
                result = compute_loss(self.model, self.batch, self.loss_fn)
        finally:
            config.short_text_groups = usual
        result.total.backward()
        _clip_and_step(self.module, self.optimizer)
        self.last_loss = result.total.detach()


class OpenCLIPStep:
    """One open_clip training step: `CLIP` forward, `ClipLoss`, the same optimizer and clipping."""

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        texts: torch.Tensor,
        settings: BenchSettings,
        fused: bool | None = None,
        module: nn.Module | None = None,
    ):
        from open_clip.loss import ClipLoss

        self.model, self.module = model, module or model
        self.images, self.texts, self.settings = images, texts, settings
        self.loss_fn = ClipLoss()
        self.optimizer = make_adamw(self.module, settings, fused)
        self.last_loss: torch.Tensor | None = None

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.settings.autocast():
            image_features, text_features, logit_scale = self.model(self.images, self.texts)[:3]
            loss = self.loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        _clip_and_step(self.module, self.optimizer)
        with torch.no_grad():
            self.module.logit_scale.clamp_(0, math.log(100))
        self.last_loss = loss.detach()


def maybe_compile(model: nn.Module, settings: BenchSettings) -> nn.Module:
    return torch.compile(model) if settings.compile else model


def batch_flops(config: FGCLIPConfig, batch: Batch, stage: int) -> dict[str, float]:
    """Model FLOPs of one training step on `batch` (`fgclip.model.flops`).

    `computed` counts the padded token lengths (what the towers actually run); `useful` counts each
    text's own length (the conservative figure MFU is reported with). Stage 2 adds the dense path.
    """
    short_texts = batch.short_input_ids.shape[0]
    extra = (short_texts - batch.num_images) / batch.num_images  # distinct short texts beyond the captions
    dense = stage == 2 and batch.boxes is not None

    def count(long_tokens: float, short_tokens: float) -> float:
        return float(
            train_step_flops(
                config,
                batch.num_images,
                long_tokens=long_tokens,
                short_tokens=short_tokens,
                extra_short_texts=extra,
                dense=dense,
            )
        )

    has_long = batch.long_input_ids is not None
    computed = count(batch.long_input_ids.shape[1] if has_long else 0, batch.short_input_ids.shape[1])
    useful = count(
        float(batch.long_attention_mask.sum(1).float().mean()) if has_long else 0,
        float(batch.short_attention_mask.sum(1).float().mean()),
    )
    return {"computed": computed, "useful": useful}


def open_clip_flops(config: FGCLIPConfig, images: int, context_length: int = 77) -> float:
    """open_clip's step on `images` image/caption pairs, every caption at the full context."""
    return float(train_step_flops(config, images, short_tokens=context_length))
