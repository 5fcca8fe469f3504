"""Fashion-FINE's global + local embedding fusion, as an evaluation-time option.

Fashion-FINE mixes the global vector `g` with a local vector `l` pooled from the patch (image) or
word (text) tokens: `normalize(g * (1 - r) + l * r)`, r = 0.05 for images and 0.25 for texts.
Its local vector comes from a trained attention-pooling layer; no such weights exist for FG-CLIP, so
here the pooling is parameter-free: the query is the global embedding, keys and values are the
L2-normalised token embeddings, weights are `softmax(g . t_i / temperature)` over the valid tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from fgclip.cli import fraction, option, positive_float

if TYPE_CHECKING:  # the settings are command-line options: this module loads torch only when it pools
    import torch


@dataclass(frozen=True)
class FusionSettings:
    """Mixing ratios (Fashion-FINE's values by default) and the attention temperature."""

    image_ratio: float = option(
        "r for images", 0.05, type=fraction, aliases=["fusion_image_ratio", "fusion-image-ratio"]
    )
    text_ratio: float = option("r for texts", 0.25, type=fraction, aliases=["fusion_text_ratio", "fusion-text-ratio"])
    temperature: float = option(
        "softmax temperature of the parameter-free attention pooling",
        0.1,
        type=positive_float,
        aliases=["fusion_temperature", "fusion-temperature"],
    )

    def __post_init__(self):
        for name in ("image_ratio", "text_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def as_dict(self) -> dict:
        return asdict(self)


def attention_pool(
    query: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """Pool `tokens` `(N, T, D)` with the attention of `query` `(N, D)`; `mask` `(N, T)` marks valid tokens.

    Tokens are L2-normalised before scoring and averaging; returns the L2-normalised `(N, D)` local vector.
    """
    import torch
    import torch.nn.functional as F

    tokens = F.normalize(tokens.float(), dim=-1)
    query = F.normalize(query.float(), dim=-1)
    logits = torch.einsum("nd,ntd->nt", query, tokens) / temperature
    if mask is not None:
        if not mask.any(dim=1).all():
            raise ValueError("attention_pool: every row needs at least one valid token")
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=-1)
    return F.normalize(torch.einsum("nt,ntd->nd", weights, tokens), dim=-1)


def fuse(global_embeds: torch.Tensor, local_embeds: torch.Tensor, ratio: float) -> torch.Tensor:
    """`normalize(g * (1 - ratio) + l * ratio)` for `(N, D)` inputs."""
    import torch.nn.functional as F

    mixed = (
        F.normalize(global_embeds.float(), dim=-1) * (1.0 - ratio) + F.normalize(local_embeds.float(), dim=-1) * ratio
    )
    return F.normalize(mixed, dim=-1)


def text_token_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, eos_token_id: int) -> torch.Tensor:
    """`(N, L)` bool: the word tokens of each text, from after BOS up to and including the first EOS.

    BOS is left out: under CLIP's causal mask its state is the same for every text, so it carries no
    information about the text; padding after the first EOS is left out too.
    """
    import torch

    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    first_eos = (input_ids == eos_token_id).int().argmax(dim=1, keepdim=True)
    mask = (positions >= 1) & (positions <= first_eos)
    if attention_mask is not None:
        mask &= attention_mask.bool()
    return mask
