"""FG-CLIP's dense features: the last ViT block run on its value path.

MaskCLIP / CLIPSelf / FG-CLIP replace the last block's self-attention by `out_proj(v_proj(LN1(x)))` (each token
attends only to itself), keep the residuals and the MLP, and read the patch tokens after the post-layernorm:
a grid of local features in the image tower's space, which the visual projection maps into the joint space.

torch only, and only the attribute names transformers 4.37 (the original LLaVA's pin) and 5.x share: the model
(`FGCLIPModel.encode_dense`) and the LLaVA towers, also those loaded in old environments, run this one code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the functions only call the modules they are given: importing this module loads no torch
    import torch
    from torch import nn

# The `model_type` of a CLIP image tower whose last block runs the value path (`fgclip.model.dense_tower`); here so
# that the LLaVA tower code under transformers 4.37 reads folder types without importing transformers-5 code.
DENSE_MODEL_TYPE = "fgclip_dense_vision"


def vision_core(vision_model: nn.Module) -> nn.Module:
    """The module holding `embeddings` / `encoder` / `post_layernorm`: a 5.x `CLIPVisionModel` is it, a 4.x
    one wraps it in `.vision_model`."""
    return getattr(vision_model, "vision_model", vision_model)


def value_path_block(block: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """A CLIP encoder layer run with its attention replaced by the value path: `(B, T, C)` -> `(B, T, C)`."""
    attention = block.self_attn
    hidden = hidden + attention.out_proj(attention.v_proj(block.layer_norm1(hidden)))
    return hidden + block.mlp(block.layer_norm2(hidden))


def value_path_features(vision_model: nn.Module, trunk: torch.Tensor) -> torch.Tensor:
    """Dense features from the hidden states entering the last block.

    trunk: `(B, 1 + H*W, C)` = `hidden_states[-2]` of the tower (CLS first).
    Returns `(B, 1 + H*W, C)`: the post-layernormed value-path output (CLS kept; callers drop it as they like).
    """
    core = vision_core(vision_model)
    return core.post_layernorm(value_path_block(core.encoder.layers[-1], trunk))
