"""FG-CLIP's losses: global InfoNCE (long and short captions), regional InfoNCE and hard negatives.

Distributed the way open_clip does it ("local loss + gather with grad"): each rank all-gathers the
features of every rank with gradients (`torch.distributed.nn.all_gather`), scores its own B rows
against the gathered columns, and uses targets ``rank * B + i``. With data-parallel gradient
averaging this equals the loss and gradients of one process on the concatenated batch, while the
logits each rank holds grow linearly, not quadratically, with the global batch.

The regional and hard-negative losses are local to each rank's batch, as in FG-CLIP.
All features are expected L2-normalised; the scales are the exponentiated temperatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn

from fgclip.loss_weights import LossWeights


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' features concatenated (gradients flow back to each rank) and this rank's offset."""
    if not _distributed():
        return features, 0
    gathered = dist_nn.all_gather(features.contiguous())
    sizes = [part.shape[0] for part in gathered]
    if len(set(sizes)) != 1:
        raise ValueError(f"every rank must contribute the same number of features, got {sizes}")
    return torch.cat(gathered, dim=0), dist.get_rank() * features.shape[0]


def global_contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE between B images and their B captions, over the global batch."""
    all_images, offset = gather_with_grad(image_features)
    all_texts, _ = gather_with_grad(text_features)
    logits_per_image = logit_scale * image_features @ all_texts.T
    logits_per_text = logit_scale * text_features @ all_images.T
    targets = torch.arange(image_features.shape[0], device=image_features.device) + offset
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2


def regional_contrastive_loss(
    region_features: torch.Tensor,
    region_text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over the valid region / region-caption pairs of the local batch.

    Invalid (padded) rows are removed before any logit is formed, so they never enter a softmax.
    Returns a zero that still carries the graph when fewer than one valid pair is left.
    """
    if valid is not None:
        region_features, region_text_features = region_features[valid], region_text_features[valid]
    if region_features.shape[0] == 0:
        return region_features.sum() * 0.0 + region_text_features.sum() * 0.0
    logits = logit_scale * region_features @ region_text_features.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def hard_negative_loss(
    region_features: torch.Tensor,
    candidate_features: torch.Tensor,
    logit_scale: torch.Tensor,
    candidate_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each region against ``[positive, negative_1, ..., negative_K]`` (target 0).

    region_features: `(R, D)`; candidate_features: `(R, 1 + K, D)` with the positive first;
    candidate_mask: `(R, 1 + K)` bool, False for padded negatives (their logit becomes -inf, so they
    take no probability). Regions with no valid negative are left out.
    """
    logits = logit_scale * torch.einsum("rd,rkd->rk", region_features, candidate_features)
    if candidate_mask is not None:
        logits = logits.masked_fill(~candidate_mask, float("-inf"))
        keep = candidate_mask[:, 0] & candidate_mask[:, 1:].any(dim=1)
        logits = logits[keep]
    if logits.shape[0] == 0:
        return region_features.sum() * 0.0 + candidate_features.sum() * 0.0
    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets)


@dataclass
class LossInputs:
    """The features one step produces (all L2-normalised) and the exponentiated temperatures."""

    image: torch.Tensor
    logit_scale: torch.Tensor
    long_text: torch.Tensor | None = None
    short_text: torch.Tensor | None = None
    region: torch.Tensor | None = None
    region_text: torch.Tensor | None = None
    region_valid: torch.Tensor | None = None
    logit_scale_region: torch.Tensor | None = None
    hard_candidates: torch.Tensor | None = None
    hard_mask: torch.Tensor | None = None
    logit_scale_hard: torch.Tensor | None = None


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class FGCLIPLoss(nn.Module):
    """``L = w_long L_long + w_short L_short + w_region L_region + w_hard L_hard``.

    A term is computed when its inputs are present and its weight is non-zero.
    """

    def __init__(self, weights: LossWeights | None = None):
        super().__init__()
        self.weights = weights or LossWeights()

    def forward(self, inputs: LossInputs) -> LossOutput:
        weights, terms = self.weights, {}
        if inputs.long_text is not None and weights.long:
            terms["long"] = global_contrastive_loss(inputs.image, inputs.long_text, inputs.logit_scale)
        if inputs.short_text is not None and weights.short:
            terms["short"] = global_contrastive_loss(inputs.image, inputs.short_text, inputs.logit_scale)
        if inputs.region is not None and inputs.region_text is not None and weights.region:
            terms["region"] = regional_contrastive_loss(
                inputs.region, inputs.region_text, inputs.logit_scale_region, inputs.region_valid
            )
        if inputs.region is not None and inputs.hard_candidates is not None and weights.hard:
            terms["hard"] = hard_negative_loss(
                inputs.region, inputs.hard_candidates, inputs.logit_scale_hard, inputs.hard_mask
            )
        if not terms:
            raise ValueError("no loss term has inputs: give at least long or short caption features")
        total = sum(getattr(weights, name) * value for name, value in terms.items())
        return LossOutput(total=total, terms=terms)
