"""A transformers vision tower whose last hidden state is FG-CLIP's dense value-path features.

Used as the `vision_tower` of a `LlavaForConditionalGeneration` built with `--vision_features dense`.
Its weights are exactly a `CLIPVisionModel`'s (same names); only the forward differs, and the config
carries its own `model_type` ("fgclip_dense_vision") on purpose: stock transformers does not know it, so
a dense LLaVA folder fails loudly where the type is not registered instead of silently running the
ordinary last block. `fgclip.auto.register_auto_classes` registers it with the Auto classes (no remote code);
that happens on any use of `fgclip.model` and in every LLaVA loader of the project (`fgclip.llava.generation`,
`lmm_integration`).

`hidden_states` has the stock length (embeddings + one entry per block); entries `0 .. L-1` are the
stock ones and entry `-1` is the dense features, so LLaVA selects them with `vision_feature_layer=-1`.
"""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from fgclip.hf_files import model_fields
from fgclip.value_path import DENSE_MODEL_TYPE, value_path_features


class FGCLIPDenseVisionConfig(CLIPVisionConfig):
    """`CLIPVisionConfig` of a tower that ends with FG-CLIP's value-path block."""

    model_type = DENSE_MODEL_TYPE


class FGCLIPDenseVisionModel(CLIPVisionModel):
    """CLIP image tower whose last block runs the value path only (see `fgclip.value_path`)."""

    config_class = FGCLIPDenseVisionConfig

    def forward(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, **kwargs
    ) -> BaseModelOutputWithPooling:
        """pixel_values `(B, 3, S, S)` -> last_hidden_state `(B, 1 + H*W, C)` dense features (CLS first).

        Other keyword arguments (`output_hidden_states`, `return_dict`, ...) are accepted for
        compatibility with LLaVA's call; every hidden state is always returned.
        """
        hidden = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden = self.pre_layrnorm(hidden)
        states = [hidden]
        for layer in self.encoder.layers[:-1]:
            hidden = layer(hidden, None)
            states.append(hidden)
        dense = value_path_features(self, hidden)
        states.append(dense)
        return BaseModelOutputWithPooling(
            last_hidden_state=dense, pooler_output=dense[:, 0], hidden_states=tuple(states)
        )


def to_dense_tower(tower: CLIPVisionModel) -> FGCLIPDenseVisionModel:
    """The same weights in a dense tower (a copy; the input tower is left as it is)."""
    config = FGCLIPDenseVisionConfig(**model_fields(tower.config.to_dict()))
    config.architectures = [FGCLIPDenseVisionModel.__name__]
    dense = FGCLIPDenseVisionModel(config).to(tower.dtype)
    dense.load_state_dict(tower.state_dict(), strict=True)
    return dense
