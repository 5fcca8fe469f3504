"""Fashion-FINE's losses: focal-weighted contrastive loss, image-text matching with sampled hard negatives,
and the contrastive loss of text-guided retrieval (composed query vs target image).

* Focal contrastive: each row's cross-entropy term `-log p` is weighted by `alpha_f (1 - p)^gamma`
  (Fashion-FINE: gamma 2, alpha_f 0.25), both directions; gamma 0 and alpha_f 1 is plain InfoNCE.
* Matching: for every pair, one negative image for its text and one negative text for its image are
  drawn with probability `softmax(logits)` over the global batch (the contrastive similarities, the
  pair's own product left out), and a binary head scores the B positives and 2B negatives.

Distributed as `fgclip.losses` is: each rank gathers every rank's features WITH gradients, scores its B
rows against all columns, and uses targets `rank * B + i`; so with data-parallel gradient averaging a run
on W processes computes the loss and gradients of one process on the concatenated batch. The hard
negatives are drawn per global row from a generator seeded by `(step seed, row)`, so the draw does not
depend on how the batch is split either. All embeddings are expected L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fgclip.data.sampler import sample_seed
from fgclip.losses import _distributed, gather_with_grad

# `(image_tokens, text_tokens, text_mask) -> (N, 2)` logits; `FashionFINEModel.match_logits`.
Matcher = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def gather_labels(ids: torch.Tensor) -> torch.Tensor:
    """Every rank's `(B, ...)` ids or masks concatenated in rank order (no gradient: they are labels)."""
    if not _distributed():
        return ids
    parts = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, ids.contiguous())
    return torch.cat(parts)


def gather_text_tokens(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's `(B, L_r, D)` text tokens (with gradients) and masks, right-padded to the longest `L_r`."""
    if not _distributed():
        return tokens, mask
    length = torch.tensor([tokens.shape[1]], device=tokens.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    pad = int(length.item()) - tokens.shape[1]
    tokens, mask = F.pad(tokens, (0, 0, 0, pad)), F.pad(mask, (0, pad), value=False)
    return gather_with_grad(tokens)[0], gather_labels(mask)


def focal_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float, excluded: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over rows of `-alpha (1 - p)^gamma log p`, `p` the softmax probability of the row's target.

    excluded: `(B, N)` bool, columns that take no probability (other copies of the row's positive).
    """
    logits = logits.float()
    if excluded is not None:
        logits = logits.masked_fill(excluded, float("-inf"))
    log_p = logits.log_softmax(dim=-1).gather(1, targets[:, None]).squeeze(1)
    weight = alpha * (1.0 - log_p.exp()).clamp(min=0.0) ** gamma if gamma else torch.full_like(log_p, alpha)
    return -(weight * log_p).mean()


def _other_copies(row_groups: torch.Tensor, column_groups: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`(B, N)` bool: columns in the row's group other than its own target column."""
    same = row_groups[:, None] == column_groups[None, :]
    same[torch.arange(len(targets), device=targets.device), targets] = False
    return same


def sample_hard_negatives(
    logits: torch.Tensor, excluded: torch.Tensor, global_rows: torch.Tensor, step_seed: int, stream: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One column per row drawn with probability `softmax(logits)` over the columns not `excluded`.

    Gumbel-max with noise from a generator seeded by `(step_seed, stream, global row)`: the same row draws
    the same column whatever the number of processes. Returns the columns `(B,)` and whether the row had
    any candidate `(B,)`.
    """
    generator = torch.Generator()
    noise = torch.stack(
        [
            torch.rand(
                logits.shape[1],
                generator=generator.manual_seed(sample_seed(step_seed, stream, int(row))),
                dtype=torch.float64,
            )
            for row in global_rows
        ]
    ).to(logits.device)
    gumbel = -torch.log(-torch.log(noise.clamp(1e-12, 1.0 - 1e-12)))
    scores = (logits.detach().double() + gumbel).masked_fill(excluded, float("-inf"))
    best, columns = scores.max(dim=1)
    return columns, torch.isfinite(best)


@dataclass
class FashionLossConfig:
    """Weights and focal parameters; Fashion-FINE's retrieval finetuning uses all four defaults."""

    contrastive_weight: float = 1.0
    matching_weight: float = 1.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25


@dataclass
class RetrievalLossInputs:
    """One rank's features for cross-modal retrieval (`FashionFINEOutput` fields) and the step's seed.

    groups: `(B,)` product ids as integers: two rows of one product are never each other's negatives.
    """

    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor
    groups: torch.Tensor
    image_tokens: torch.Tensor | None = None
    text_tokens: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    step_seed: int = 0


@dataclass
class CompositionLossInputs:
    """One rank's features for text-guided retrieval.

    target_ids / reference_ids: `(B,)` image ids as integers (equal ids are the same image).
    """

    query: torch.Tensor
    target: torch.Tensor
    reference: torch.Tensor
    logit_scale: torch.Tensor
    target_ids: torch.Tensor
    reference_ids: torch.Tensor


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def retrieval_contrastive(
    inputs: RetrievalLossInputs, gamma: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The focal contrastive loss of a retrieval step; also its logits (image->text, text->image) and offset."""
    all_images, offset = gather_with_grad(inputs.image)
    all_texts, _ = gather_with_grad(inputs.text)
    logits_i2t = inputs.logit_scale * inputs.image @ all_texts.T
    logits_t2i = inputs.logit_scale * inputs.text @ all_images.T
    targets = torch.arange(inputs.image.shape[0], device=inputs.image.device) + offset
    copies = _other_copies(inputs.groups, gather_labels(inputs.groups), targets)
    loss = (
        focal_cross_entropy(logits_i2t, targets, gamma, alpha, copies)
        + focal_cross_entropy(logits_t2i, targets, gamma, alpha, copies)
    ) / 2
    return loss, logits_i2t, logits_t2i, offset


def matching_loss(
    inputs: RetrievalLossInputs, matcher: Matcher, logits_i2t: torch.Tensor, logits_t2i: torch.Tensor, offset: int
) -> torch.Tensor:
    """Binary cross-entropy of the matching head on B positives and 2B sampled hard negatives.

    The mean is over 3B slots whatever the number of negatives found (a row whose every candidate is
    its own product has none), so the per-rank means average to the single-process loss.
    """
    batch = inputs.image.shape[0]
    device = inputs.image.device
    all_image_tokens, _ = gather_with_grad(inputs.image_tokens)
    all_text_tokens, all_text_mask = gather_text_tokens(inputs.text_tokens, inputs.text_mask)
    rows = torch.arange(batch, device=device) + offset
    excluded = inputs.groups[:, None] == gather_labels(inputs.groups)[None, :]  # includes the pair itself
    negative_images, has_image = sample_hard_negatives(logits_t2i, excluded, rows, inputs.step_seed, stream=0)
    negative_texts, has_text = sample_hard_negatives(logits_i2t, excluded, rows, inputs.step_seed, stream=1)
    image_rows = torch.cat([rows, negative_images[has_image], rows[has_text]])
    text_rows = torch.cat([rows, rows[has_image], negative_texts[has_text]])
    logits = matcher(all_image_tokens[image_rows], all_text_tokens[text_rows], all_text_mask[text_rows])
    labels = torch.zeros(len(image_rows), dtype=torch.long, device=device)
    labels[:batch] = 1
    return F.cross_entropy(logits.float(), labels, reduction="sum") / (3 * batch)


class FashionFINELoss(nn.Module):
    """`L = w_c L_focal_contrastive + w_m L_matching` (retrieval), or `w_c L_composition` (text-guided)."""

    def __init__(self, config: FashionLossConfig | None = None):
        super().__init__()
        self.config = config or FashionLossConfig()

    def forward(
        self, inputs: RetrievalLossInputs | CompositionLossInputs, matcher: Matcher | None = None
    ) -> LossOutput:
        config = self.config
        if isinstance(inputs, CompositionLossInputs):
            term = composition_contrastive(inputs, config.focal_gamma, config.focal_alpha)
            return LossOutput(total=config.contrastive_weight * term, terms={"composition": term})
        contrastive, logits_i2t, logits_t2i, offset = retrieval_contrastive(
            inputs, config.focal_gamma, config.focal_alpha
        )
        terms = {"contrastive": contrastive}
        if config.matching_weight:
            if matcher is None or inputs.image_tokens is None:
                raise ValueError("the matching loss needs the model's matcher and the image and text tokens")
            terms["matching"] = matching_loss(inputs, matcher, logits_i2t, logits_t2i, offset)
        total = config.contrastive_weight * contrastive + config.matching_weight * terms.get("matching", 0.0)
        return LossOutput(total=total, terms=terms)


def composition_contrastive(inputs: CompositionLossInputs, gamma: float, alpha: float) -> torch.Tensor:
    """Composed query vs target image, both ways, over the global batch; the reference images are extra
    negatives of the queries (as Fashion-FINE's text-guided finetuning has them). Other copies of a row's
    target image (the same image in another triplet, or as a reference) take no probability."""
    all_targets, offset = gather_with_grad(inputs.target)
    all_references, _ = gather_with_grad(inputs.reference)
    all_queries, _ = gather_with_grad(inputs.query)
    target_ids, reference_ids = gather_labels(inputs.target_ids), gather_labels(inputs.reference_ids)
    targets = torch.arange(inputs.query.shape[0], device=inputs.query.device) + offset
    logits_q2i = inputs.logit_scale * inputs.query @ torch.cat([all_targets, all_references]).T
    logits_i2q = inputs.logit_scale * inputs.target @ all_queries.T
    columns = torch.cat([target_ids, reference_ids])
    loss_q2i = focal_cross_entropy(
        logits_q2i, targets, gamma, alpha, _other_copies(inputs.target_ids, columns, targets)
    )
    loss_i2q = focal_cross_entropy(
        logits_i2q, targets, gamma, alpha, _other_copies(inputs.target_ids, target_ids, targets)
    )
    return (loss_q2i + loss_i2q) / 2
