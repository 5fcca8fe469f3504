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
class ModelShape:
    name: str
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection_dim: int
    mlp_ratio: int = 4

    def config(self) -> FGCLIPConfig:
        from fgclip.model import FGCLIPConfig

        return FGCLIPConfig(
            text_config=dict(
                hidden_size=self.text_width,
                intermediate_size=self.mlp_ratio * self.text_width,
                num_hidden_layers=self.text_layers,
                num_attention_heads=self.text_heads,
            ),
            vision_config=dict(
                hidden_size=self.vision_width,
                intermediate_size=self.mlp_ratio * self.vision_width,
                num_hidden_layers=self.vision_layers,
                num_attention_heads=self.vision_heads,
                image_size=self.image_size,
                patch_size=self.patch_size,
            ),
            projection_dim=self.projection_dim,
        )


SHAPES = {
    "tiny": ModelShape(
        "tiny",
        image_size=32,
        patch_size=8,
        vision_width=32,
        vision_layers=2,
        vision_heads=4,
        text_width=32,
        text_layers=2,
        text_heads=4,
        projection_dim=16,
    ),
    "small": ModelShape(
        "small",
        image_size=112,
        patch_size=16,
        vision_width=256,
        vision_layers=6,
        vision_heads=4,
        text_width=256,
        text_layers=6,
        text_heads=4,
        projection_dim=256,
    ),
    "b16": ModelShape(
        "b16",
        image_size=224,
        patch_size=16,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        text_width=512,
        text_layers=12,
        text_heads=8,
        projection_dim=512,
    ),
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
