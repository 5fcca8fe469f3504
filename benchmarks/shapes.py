"""Model shapes the benchmarks run at, and open_clip's twin of an FG-CLIP shape.

`b16` is OpenAI CLIP ViT-B/16 at 224 px (the FG-CLIP base model); `small` is a scaled-down ViT that a
2-core CPU steps through in about a second; `tiny` is the smoke-test shape. The open_clip twin has the
same towers (width, depth, heads, MLP, patch, image size, 77-token context, 49,408-token vocabulary,
QuickGELU as OpenAI CLIP and Hugging Face's CLIPConfig use), built without pretrained weights, so the
speed of the two implementations is compared on identical work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # light at import: benchmarks.run lists the shapes before torch loads
    import torch

    from fgclip.model import FGCLIPConfig, FGCLIPModel


@dataclass(frozen=True)
class Tower:
    """One transformer tower's size: width, depth and attention heads."""

    width: int
    layers: int
    heads: int

    def config(self, mlp_ratio: int) -> dict:
        """The tower's keys of a Hugging Face CLIP text or vision config."""
        return dict(
            hidden_size=self.width,
            intermediate_size=mlp_ratio * self.width,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
        )


@dataclass(frozen=True)
class ModelShape:
    name: str
    image_size: int
    patch_size: int
    vision: Tower
    text: Tower
    projection_dim: int
    mlp_ratio: int = 4

    def config(self) -> FGCLIPConfig:
        from fgclip.model import FGCLIPConfig

        return FGCLIPConfig(
            text_config=self.text.config(self.mlp_ratio),
            vision_config=dict(
                self.vision.config(self.mlp_ratio), image_size=self.image_size, patch_size=self.patch_size
            ),
            projection_dim=self.projection_dim,
        )


# the towers as Tower(width, layers, heads)
SHAPES = {
    shape.name: shape
    for shape in (
        ModelShape(
            "tiny", image_size=32, patch_size=8, vision=Tower(32, 2, 4), text=Tower(32, 2, 4), projection_dim=16
        ),
        ModelShape(
            "small", image_size=112, patch_size=16, vision=Tower(256, 6, 4), text=Tower(256, 6, 4), projection_dim=256
        ),
        ModelShape(
            "b16", image_size=224, patch_size=16, vision=Tower(768, 12, 12), text=Tower(512, 12, 8), projection_dim=512
        ),
    )
}


def get_shape(name: str) -> ModelShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown model shape {name!r}; choose from {', '.join(SHAPES)}") from None


def build_fgclip(shape: ModelShape, seed: int = 0) -> FGCLIPModel:
    """A randomly initialised FG-CLIP of `shape` (fp32, train mode)."""
    import torch

    from fgclip.model import FGCLIPModel

    torch.manual_seed(seed)
    return FGCLIPModel(shape.config()).train()


def open_clip_config(config: FGCLIPConfig) -> dict:
    """open_clip's model config (its JSON layout) for the towers of `config`."""
    vision, text = config.vision_config, config.text_config
    return {
        "embed_dim": config.projection_dim,
        "quick_gelu": vision.hidden_act == "quick_gelu",
        "vision_cfg": {
            "image_size": vision.image_size,
            "layers": vision.num_hidden_layers,
            "width": vision.hidden_size,
            "patch_size": vision.patch_size,
            "head_width": vision.hidden_size // vision.num_attention_heads,
            "mlp_ratio": vision.intermediate_size / vision.hidden_size,
        },
        "text_cfg": {
            "context_length": text.max_position_embeddings,
            "vocab_size": text.vocab_size,
            "width": text.hidden_size,
            "heads": text.num_attention_heads,
            "layers": text.num_hidden_layers,
            "mlp_ratio": text.intermediate_size / text.hidden_size,
        },
    }


def build_open_clip_twin(config: FGCLIPConfig, seed: int = 0):
    """open_clip's `CLIP` with the same towers as `config`, randomly initialised (no download)."""
    import torch
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    settings = open_clip_config(config)
    torch.manual_seed(seed)
    return CLIP(
        embed_dim=settings["embed_dim"],
        vision_cfg=CLIPVisionCfg(**settings["vision_cfg"]),
        text_cfg=CLIPTextCfg(**settings["text_cfg"]),
        quick_gelu=settings["quick_gelu"],
    ).train()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
