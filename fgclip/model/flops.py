"""Model FLOPs counted from the architecture, for throughput and MFU reports (as nanoGPT's estimate_mfu).

Counts the matrix multiplications (2 FLOPs per multiply-add) of the forward pass: patch embedding,
per-block Q/K/V/out projections, attention scores and mixing, MLP, and the output projections. Norms,
softmax and activations are left out (well under 1%). A training step is taken as 3x the forward
(backward ~ 2x forward), the usual convention for MFU; activation checkpointing's recomputation is
deliberately not counted (MFU counts model FLOPs, not hardware FLOPs).
"""

from __future__ import annotations

from fgclip.model.configuration import FGCLIPConfig


def transformer_forward_flops(tokens: int, width: int, mlp_width: int, layers: int) -> int:
    """Forward FLOPs of `layers` pre-LN transformer blocks over one sequence of `tokens` tokens."""
    projections = 4 * tokens * width * width  # q, k, v, out
    attention = 2 * tokens * tokens * width  # scores + weighted sum
    mlp = 2 * tokens * width * mlp_width
    return 2 * layers * (projections + attention + mlp)


def image_forward_flops(config: FGCLIPConfig, dense: bool = False) -> int:
    """One image through the vision tower and projection; `dense` adds the value-path last block and
    the projection of every patch (stage 2 / region features)."""
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    width = vision.hidden_size
    flops = 2 * patches * (3 * vision.patch_size**2) * width  # patch embedding
    flops += transformer_forward_flops(patches + 1, width, vision.intermediate_size, vision.num_hidden_layers)
    flops += 2 * width * config.projection_dim
    if dense:
        tokens = patches + 1
        flops += 2 * tokens * (2 * width * width + 2 * width * vision.intermediate_size)  # v, out, MLP
        flops += 2 * patches * width * config.projection_dim
    return flops


def text_forward_flops(config: FGCLIPConfig, tokens: int) -> int:
    """One text of `tokens` tokens through the text tower and projection."""
    text = config.text_config
    return transformer_forward_flops(tokens, text.hidden_size, text.intermediate_size, text.num_hidden_layers) + (
        2 * text.hidden_size * config.projection_dim
    )


def train_step_flops(
    config: FGCLIPConfig,
    images: int,
    long_tokens: int = 0,
    short_tokens: int = 0,
    extra_short_texts: int = 0,
    dense: bool = False,
) -> int:
    """Model FLOPs of one training step (forward + backward = 3x forward) for `images` samples, each
    with one long caption of `long_tokens`, one short caption of `short_tokens`, and `extra_short_texts`
    more short texts per image (stage 2: region captions and hard negatives, of `short_tokens`)."""
    per_image = image_forward_flops(config, dense)
    if long_tokens:
        per_image += text_forward_flops(config, long_tokens)
    if short_tokens:
        per_image += (1 + extra_short_texts) * text_forward_flops(config, short_tokens)
    return 3 * images * per_image
