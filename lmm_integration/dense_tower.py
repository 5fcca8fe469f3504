"""A transformers vision tower whose last hidden state is FG-CLIP's dense value-path features.

Used as the `vision_tower` of a `LlavaForConditionalGeneration` built with `--vision-features dense`.
Its weights are exactly a `CLIPVisionModel`'s (same names); only the forward differs, and the config
carries its own `model_type` ("fgclip_dense_vision") on purpose: stock transformers does not know it, so
a dense LLaVA folder fails loudly without `import lmm_integration` instead of silently running the
ordinary last block. `import lmm_integration` registers the type with the Auto classes (no remote code).

`hidden_states` has the stock length (embeddings + one entry per block); entries `0 .. L-1` are the
stock ones and entry `-1` is the dense features, so LLaVA selects them with `vision_feature_layer=-1`.
"""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from lmm_integration.dense import value_path_features

DENSE_MODEL_TYPE = "fgclip_dense_vision"


class FGCLIPDenseVisionConfig(CLIPVisionConfig):
    """`CLIPVisionConfig` of a tower that ends with FG-CLIP's value-path block."""

    model_type = DENSE_MODEL_TYPE


class FGCLIPDenseVisionModel(CLIPVisionModel):
    """CLIP image tower whose last block runs the value path only (see `lmm_integration.dense`)."""

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
        return BaseModelOutputWithPooling(last_hidden_state=dense, pooler_output=dense[:, 0], hidden_states=tuple(states))


def to_dense_tower(tower: CLIPVisionModel) -> FGCLIPDenseVisionModel:
    """The same weights in a dense tower (a copy; the input tower is left as it is)."""
    config = FGCLIPDenseVisionConfig(**_config_fields(tower.config))
    config.architectures = ["FGCLIPDenseVisionModel"]
    dense = FGCLIPDenseVisionModel(config).to(tower.dtype)
    dense.load_state_dict(tower.state_dict(), strict=True)
    return dense


def _config_fields(config: CLIPVisionConfig) -> dict:
    values = config.to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    return values


def register_auto_classes() -> None:
    """Make `AutoConfig`/`AutoModel` (and so `LlavaForConditionalGeneration`) know the dense tower."""
    from transformers import AutoConfig, AutoModel

    AutoConfig.register(DENSE_MODEL_TYPE, FGCLIPDenseVisionConfig, exist_ok=True)
    AutoModel.register(FGCLIPDenseVisionConfig, FGCLIPDenseVisionModel, exist_ok=True)
