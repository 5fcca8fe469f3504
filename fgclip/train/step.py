"""One training step: `model.forward` -> `FGCLIPLoss` with the stage's weights.

The forward is the model's own `forward`, so a DeepSpeed engine (which wraps `forward`) and a plain
module are called the same way. Embeddings are scored in fp32 even under bf16.
"""

from __future__ import annotations

import torch

from fgclip.data.collate import Batch
from fgclip.losses import FGCLIPLoss, LossInputs
from fgclip.losses import LossOutput as LossOutput  # re-exported: what a step returns
from fgclip.model import FGCLIPOutput

MAX_LOGIT_SCALE = 100.0  # CLIP's cap on exp(temperature); without it the scales can run away


def loss_inputs(output: FGCLIPOutput, batch: Batch) -> LossInputs:
    """Map the model's features and the batch's index tensors to `LossInputs`.

    The short-text embeddings `(T, D)` hold every distinct short text once; captions, region texts and
    hard-negative candidates `(R, 1 + K, D)` are gathered from them by index.
    """
    short = output.short_text_embeds.float() if output.short_text_embeds is not None else None
    inputs = LossInputs(
        image=output.image_embeds.float(),
        logit_scale=output.logit_scale.float().clamp(max=MAX_LOGIT_SCALE),
        long_text=output.long_text_embeds.float() if output.long_text_embeds is not None else None,
        short_text=short[batch.caption_index] if short is not None else None,
    )
    if output.region_embeds is not None and short is not None and batch.region_text_index is not None:
        inputs.region = output.region_embeds.float()
        inputs.region_text = short[batch.region_text_index]
        inputs.logit_scale_region = output.logit_scale_region.float().clamp(max=MAX_LOGIT_SCALE)
        inputs.hard_candidates = short[batch.hard_index]
        inputs.hard_mask = batch.hard_mask
        inputs.logit_scale_hard = output.logit_scale_hard.float().clamp(max=MAX_LOGIT_SCALE)
    return inputs


def compute_loss(model, batch: Batch, loss_fn: FGCLIPLoss) -> LossOutput:
    """Forward (`model` may be an `FGCLIPModel` or a DeepSpeed engine around one) and loss."""
    output = model(**batch.model_inputs())
    return loss_fn(loss_inputs(output, batch))


def train_step(
    model, batch: Batch, loss_fn: FGCLIPLoss, optimizer: torch.optim.Optimizer, grad_clip: float | None = None
) -> LossOutput:
    """A whole plain-PyTorch step on one batch: forward, loss, backward, clip, optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    result = compute_loss(model, batch, loss_fn)
    result.total.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return result
