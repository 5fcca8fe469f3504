"""FG-CLIP's dense (value-path) patch features as a feature source for a LLaVA projector.

The features are those of `FGCLIPModel.encode_dense` *before* the visual projection: the last ViT block
run with its self-attention replaced by the value path (out_proj(v_proj(LN1(x))), residual and MLP kept),
then the post-layernorm. We stop before the projection because

* the projection is linear, so the projector's first linear layer can absorb it (nothing is lost), and the
  projector keeps the tower's hidden size as its input width, exactly as with the `hidden` source;
* no weight beyond a plain `CLIPVisionModel` is needed, so the exported tower folder stays a stock one.

This module depends only on torch and on attribute names that transformers 4.37 (pinned by the original
LLaVA codebase) and 5.x share, so the original-LLaVA tower class can use it too. `tests/lmm_integration`
checks that it matches `FGCLIPModel.encode_dense` once the visual projection is applied.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURE_SOURCES = ("hidden", "dense")


def vision_core(vision_model: nn.Module) -> nn.Module:
    """The module holding `embeddings`/`encoder`/`post_layernorm`: a 5.x `CLIPVisionModel` is it, a 4.x
    one wraps it in `.vision_model`."""
    return getattr(vision_model, "vision_model", vision_model)


def value_path_features(vision_model: nn.Module, trunk: torch.Tensor) -> torch.Tensor:
    """Dense features from the hidden states entering the last block.

    trunk: `(B, 1 + H*W, C)` = `hidden_states[-2]` of the tower (CLS first).
    Returns `(B, 1 + H*W, C)`: post-layernormed value-path output (CLS kept; callers drop it as they like).
    """
    core = vision_core(vision_model)
    block = core.encoder.layers[-1]
    hidden = trunk + block.self_attn.out_proj(block.self_attn.v_proj(block.layer_norm1(trunk)))
    hidden = hidden + block.mlp(block.layer_norm2(hidden))
    return core.post_layernorm(hidden)


def check_feature_source(source: str) -> str:
    if source not in FEATURE_SOURCES:
        raise ValueError(f"vision features must be one of {FEATURE_SOURCES}, got {source!r}")
    return source
