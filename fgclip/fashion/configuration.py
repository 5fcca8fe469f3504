"""Configuration of a Fashion-FINE model: FG-CLIP's configuration plus the global+local and fusion settings."""

from __future__ import annotations

from fgclip.model.configuration import FGCLIPConfig

COMPOSITIONS = ("sum", "fusion")


class FashionFINEConfig(FGCLIPConfig):
    r"""FG-CLIP configuration with Fashion-FINE's parts.

    local_pooling (`bool`, defaults to `True`):
        Mix a local vector into each embedding: `normalize(g * (1 - r) + l * r)`, `l` pooled from the patch
        or word tokens by one attention layer shared by both modalities. `False` is the global-only model.
    image_local_ratio (`float`, defaults to 0.05):
        `r` for images (Fashion-FINE's value).
    text_local_ratio (`float`, defaults to 0.25):
        `r` for texts (Fashion-FINE's value).
    fusion_layers (`int`, defaults to 2):
        Cross-attention blocks (text tokens attend to image tokens) under the image-text matching head and
        the text-guided composition.
    fusion_heads (`int`, defaults to 8):
        Attention heads of those blocks; must divide `projection_dim`.
    query_composition (`str`, defaults to `"sum"`):
        How a text-guided query (reference image + modification text) is made when the model is evaluated:
        `"sum"`, the normalised sum of the two embeddings (zero-shot), or `"fusion"`, the trained
        cross-attention composition (set by the text-guided finetuning).
    """

    model_type = "fashion_fine"

    local_pooling: bool = True
    image_local_ratio: float = 0.05
    text_local_ratio: float = 0.25
    fusion_layers: int = 2
    fusion_heads: int = 8
    query_composition: str = "sum"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("image_local_ratio", "text_local_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.fusion_layers < 1:
            raise ValueError(f"fusion_layers must be >= 1, got {self.fusion_layers}")
        if self.fusion_heads < 1 or self.projection_dim % self.fusion_heads:
            raise ValueError(f"fusion_heads ({self.fusion_heads}) must divide projection_dim ({self.projection_dim})")
        if self.query_composition not in COMPOSITIONS:
            raise ValueError(f"query_composition must be one of {COMPOSITIONS}, got {self.query_composition!r}")
