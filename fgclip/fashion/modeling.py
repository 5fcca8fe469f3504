"""Fashion-FINE on FG-CLIP (or CLIP) towers: global + local embeddings, image-text matching, composition.

Fashion-FINE (ECCV 2024) makes each embedding from the tower's global vector `g` and a local vector `l`
pooled from the tokens by ONE attention layer shared by image patches and words:
`normalize(normalize(g) * (1 - r) + normalize(l) * r)`, r = 0.05 for images and 0.25 for texts. Its
public model pools the towers' hidden states and projects the result; here the tokens are projected into
the joint space first (the projection is linear, so the pooled vector is the same up to the attention
scores), which is what lets one layer serve a 768-wide image tower and a 512-wide text tower.

Its matching head and its text-guided composition run on fused features: the text tokens attend to the
image tokens in cross-attention blocks (ALBEF-style fusion layers; a dual encoder has none, so they are
added here, in the joint space, with residual branches that start at zero). Matching reads the fused
state at the text's EOS token; a composed query is `normalize(t + v + delta)`, where `t`, `v` are the
text's and the reference image's embeddings and `delta` is what the fusion added at the EOS token, so an
untrained composition is exactly the zero-shot sum `normalize(t + v)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from fgclip.fashion.configuration import FashionFINEConfig
from fgclip.hf_files import folder_special_token_ids, model_fields
from fgclip.model.modeling import FGCLIPModel

# FG-CLIP weights a Fashion-FINE model adds to; everything else of a Fashion-FINE folder is these.
FASHION_PARTS = ("local_pooling.", "fusion.", "matching_norm.", "matching_head.")


class TokenAttentionPooling(nn.Module):
    """Fashion-FINE's attention pooling: `a_i = softmax_i(w . tanh(W t_i + b))`, `l = sum_i a_i t_i`."""

    def __init__(self, dim: int):
        super().__init__()
        self.hidden = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)
        self.hidden.init_std = self.score.init_std = 0.02  # Fashion-FINE's initialisation

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`tokens` `(N, T, D)`, `mask` `(N, T)` bool (True = use) -> the unnormalised local vector `(N, D)`."""
        logits = self.score(torch.tanh(self.hidden(tokens))).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        weights = logits.float().softmax(dim=-1).to(tokens.dtype)
        return torch.einsum("nt,ntd->nd", weights, tokens)


class FusionEncoder(nn.Module):
    """Pre-norm blocks of self-attention over the text tokens, cross-attention to the image tokens and an
    MLP (torch's `TransformerDecoderLayer`)."""

    def __init__(self, dim: int, layers: int, heads: int):
        super().__init__()
        self.memory_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(
                dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )
        for layer in self.layers:
            # residual branches start at zero: an untrained encoder returns the text tokens unchanged
            layer.self_attn.out_proj.zero_init = layer.multihead_attn.out_proj.zero_init = True
            layer.linear2.zero_init = True
            layer.linear1.init_std = dim**-0.5

    def forward(self, text_tokens: torch.Tensor, text_mask: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """`(N, L, D)` text tokens (`text_mask` `(N, L)` True = real token) attending to `(N, T, D)` image tokens."""
        memory = self.memory_norm(image_tokens)
        hidden = text_tokens
        for layer in self.layers:
            hidden = layer(hidden, memory, tgt_key_padding_mask=~text_mask)
        return hidden


@dataclass
class FashionFINEOutput(ModelOutput):
    """Features of one finetuning step (embeddings L2-normalised, tokens in the joint space, unnormalised).

    image_embeds: `(B, D)` the images (targets, for text-guided retrieval).
    text_embeds: `(B, D)` the texts.
    query_embeds: `(B, D)` composed queries (reference image + modification text), when references are given.
    reference_embeds: `(B, D)` the reference images, when given.
    image_tokens: `(B, 1 + H*W, D)` CLS then patch tokens of `pixel_values`.
    text_tokens: `(B, L, D)`; text_mask: `(B, L)` bool, True up to and including each text's first EOS.
    logit_scale: the exponentiated temperature (a scalar).
    """

    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    query_embeds: torch.Tensor | None = None
    reference_embeds: torch.Tensor | None = None
    image_tokens: torch.Tensor | None = None
    text_tokens: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


def _mix(global_embeds: torch.Tensor, local_embeds: torch.Tensor, ratio: float) -> torch.Tensor:
    mixed = F.normalize(global_embeds, dim=-1) * (1.0 - ratio) + F.normalize(local_embeds, dim=-1) * ratio
    return F.normalize(mixed, dim=-1)


def _last_valid(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last True (the first EOS, for `text_mask`)."""
    return mask.long().sum(dim=1) - 1


class FashionFINEModel(FGCLIPModel):
    """FG-CLIP towers with Fashion-FINE's local pooling, fusion blocks and matching head.

    `encode_image` / `encode_text` stay the towers' global embeddings; `encode_image_fused` /
    `encode_text_fused` are the model's retrieval embeddings (global + local, or global only when
    `config.local_pooling` is off).
    """

    config: FashionFINEConfig
    config_class = FashionFINEConfig

    def __init__(self, config: FashionFINEConfig):
        super().__init__(config)
        dim = config.projection_dim
        self.local_pooling = TokenAttentionPooling(dim) if config.local_pooling else None
        self.fusion = FusionEncoder(dim, config.fusion_layers, config.fusion_heads)
        self.matching_norm = nn.LayerNorm(dim)
        self.matching_head = nn.Linear(dim, 2)
        self.matching_head.init_std = 0.02
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers 5 initialises module by module and passes over containers without parameters of their
        # own (the pooling layer, the fusion encoder), so the Fashion-FINE parts mark their leaf layers instead.
        super()._init_weights(module)
        if getattr(module, "zero_init", False):
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif getattr(module, "init_std", None) is not None:
            init.trunc_normal_(module.weight, std=module.init_std)
            if module.bias is not None:
                init.zeros_(module.bias)

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> FashionFINEModel:
        """A Fashion-FINE folder loads as saved. Any other folder `FGCLIPModel.from_pretrained` loads (this
        project's FG-CLIP, stock CLIP, an official FG-CLIP release) gives a new Fashion-FINE model on its
        towers (`from_towers`), with config overrides taken from `kwargs`."""
        path = Path(str(pretrained_model_name_or_path)).expanduser()
        if not path.is_dir():
            return PreTrainedModel.from_pretrained.__func__(cls, pretrained_model_name_or_path, *args, **kwargs)
        if model_type_of(path) != FashionFINEConfig.model_type:
            dtype = kwargs.pop("dtype", None)
            return cls.from_towers(path, dtype=dtype if isinstance(dtype, torch.dtype) else None, **kwargs)
        from fgclip.model import conversion

        # As FGCLIPModel: pool at the end-of-text id of the tokenizer the folder carries.
        ids = folder_special_token_ids(path, conversion.read_text_vocab_size(path))
        model = PreTrainedModel.from_pretrained.__func__(cls, str(path), *args, **kwargs)
        model.config.set_special_token_ids(ids)
        return model

    @classmethod
    def from_towers(cls, directory: str | Path, dtype: torch.dtype | None = None, **overrides) -> FashionFINEModel:
        """Fashion-FINE parts (freshly initialised) on the towers of an FG-CLIP / CLIP / official folder."""
        towers = FGCLIPModel.from_pretrained(str(directory), dtype=torch.float32)
        values = {k: v for k, v in model_fields(towers.config.to_dict()).items() if k not in ("dtype", "torch_dtype")}
        config = FashionFINEConfig(**{**values, **overrides})
        model = cls(config)
        result = model.load_state_dict(towers.state_dict(), strict=False)
        foreign = [name for name in result.missing_keys if not name.startswith(FASHION_PARTS)]
        if foreign or result.unexpected_keys:
            raise ValueError(
                f"{directory}: tower weights do not fit (missing {foreign[:3]}, "
                f"unexpected {result.unexpected_keys[:3]})"
            )
        return model.to(dtype) if dtype is not None else model

    # ------------------------------------------------------------------ tokens
    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(B, 1 + H*W, D)`: every token of the last ViT block through the post-norm and the projection.

        Token 0 is `encode_image`'s (unnormalised) global embedding; the rest are the patch tokens.
        """
        hidden = self.vision_model.encoder.layers[-1](self._vision_trunk(pixel_values), None)
        return self.visual_projection(self.vision_model.post_layernorm(hidden))

    def text_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(N, L, D)` projected tokens (77-slot path) and the `(N, L)` mask of tokens up to the first EOS.

        The token at the first EOS is `encode_text`'s (unnormalised) global embedding.
        """
        input_ids, attention_mask = self._fit_text_length(input_ids, attention_mask, self.text_max_length(False))
        tokens = self.encode_text_tokens(input_ids, attention_mask, long=False, normalize=False)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        first_eos = (input_ids == self.eos_token_id).int().argmax(dim=1, keepdim=True)
        mask = positions <= first_eos
        if attention_mask is not None:
            mask &= attention_mask.bool()
        return tokens, mask

    # ------------------------------------------------------------------ embeddings
    def image_embeds_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The retrieval embedding `(B, D)` of `image_tokens`, L2-normalised."""
        if self.local_pooling is None:
            return F.normalize(tokens[:, 0], dim=-1)
        return _mix(tokens[:, 0], self.local_pooling(tokens[:, 1:]), self.config.image_local_ratio)

    def text_embeds_from_tokens(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The retrieval embedding `(N, D)` of `text_tokens`, L2-normalised.

        The local vector pools the words: BOS is left out (under CLIP's causal mask its state is the same
        for every text), the first EOS is kept, padding is masked.
        """
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        global_embeds = tokens[rows, _last_valid(mask)]
        if self.local_pooling is None:
            return F.normalize(global_embeds, dim=-1)
        words = mask.clone()
        words[:, 0] = False
        return _mix(global_embeds, self.local_pooling(tokens, words), self.config.text_local_ratio)

    def encode_image_fused(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Retrieval embeddings `(B, D)` of images (global + local), L2-normalised."""
        return self.image_embeds_from_tokens(self.image_tokens(pixel_values))

    def encode_text_fused(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Retrieval embeddings `(N, D)` of texts (global + local), L2-normalised."""
        return self.text_embeds_from_tokens(*self.text_tokens(input_ids, attention_mask))

    # ------------------------------------------------------------------ fusion: matching and composition
    def match_logits(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """`(N, 2)` logits [no match, match] of N image-text pairs given as tokens."""
        fused = self.fusion(text_tokens, text_mask, image_tokens)
        rows = torch.arange(fused.shape[0], device=fused.device)
        return self.matching_head(self.matching_norm(fused[rows, _last_valid(text_mask)]))

    def match(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(N,)` probability that image i and text i match (for re-ranking a shortlist)."""
        text_tokens, text_mask = self.text_tokens(input_ids, attention_mask)
        return self.match_logits(self.image_tokens(pixel_values), text_tokens, text_mask).float().softmax(-1)[:, 1]

    def compose_from_tokens(
        self,
        reference_tokens: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        reference_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Composed queries `(N, D)`: `normalize(t + v + delta)` (see the module docstring)."""
        reference_embeds = (
            self.image_embeds_from_tokens(reference_tokens) if reference_embeds is None else reference_embeds
        )
        text_embeds = self.text_embeds_from_tokens(text_tokens, text_mask) if text_embeds is None else text_embeds
        rows = torch.arange(text_tokens.shape[0], device=text_tokens.device)
        eos = _last_valid(text_mask)
        delta = self.fusion(text_tokens, text_mask, reference_tokens)[rows, eos] - text_tokens[rows, eos]
        return F.normalize(text_embeds + reference_embeds + delta, dim=-1)

    def compose(
        self, reference_pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Text-guided retrieval queries `(N, D)` from reference images and modification texts, L2-normalised:
        the trained fusion when `config.query_composition` is "fusion", else the zero-shot sum."""
        reference_tokens = self.image_tokens(reference_pixel_values)
        text_tokens, text_mask = self.text_tokens(input_ids, attention_mask)
        if self.config.query_composition == "fusion":
            return self.compose_from_tokens(reference_tokens, text_tokens, text_mask)
        summed = self.image_embeds_from_tokens(reference_tokens) + self.text_embeds_from_tokens(text_tokens, text_mask)
        return F.normalize(summed, dim=-1)

    # ------------------------------------------------------------------ training forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        reference_pixel_values: torch.Tensor | None = None,
    ) -> FashionFINEOutput:
        """One finetuning step's features, with one pass of the image tower.

        Without `reference_pixel_values` (cross-modal retrieval): image and text embeddings plus the tokens
        the matching loss fuses. With them (text-guided retrieval): `pixel_values` are the targets,
        `input_ids` the modification texts, and `query_embeds` the trained composition.
        """
        images = pixel_values if reference_pixel_values is None else torch.cat([pixel_values, reference_pixel_values])
        image_tokens = self.image_tokens(images)
        text_tokens, text_mask = self.text_tokens(input_ids, attention_mask)
        image_embeds = self.image_embeds_from_tokens(image_tokens)
        text_embeds = self.text_embeds_from_tokens(text_tokens, text_mask)
        output = FashionFINEOutput(
            text_embeds=text_embeds, text_tokens=text_tokens, text_mask=text_mask, logit_scale=self.logit_scale.exp()
        )
        if reference_pixel_values is None:
            output.image_embeds, output.image_tokens = image_embeds, image_tokens
            return output
        batch = pixel_values.shape[0]
        output.image_embeds, output.reference_embeds = image_embeds[:batch], image_embeds[batch:]
        output.image_tokens = image_tokens[:batch]
        output.query_embeds = self.compose_from_tokens(
            image_tokens[batch:], text_tokens, text_mask, output.reference_embeds, text_embeds
        )
        return output


def model_type_of(directory: Path) -> str | None:
    """The `model_type` of a folder's config.json, or None when it has none."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        return None
    try:
        return json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def register_auto_classes() -> None:
    """Register Fashion-FINE with AutoConfig, AutoModel and AutoProcessor (a CLIPProcessor). Idempotent."""
    from transformers import AutoConfig, AutoModel, AutoProcessor, CLIPProcessor

    AutoConfig.register(FashionFINEConfig.model_type, FashionFINEConfig, exist_ok=True)
    AutoModel.register(FashionFINEConfig, FashionFINEModel, exist_ok=True)
    AutoProcessor.register(FashionFINEConfig, CLIPProcessor, exist_ok=True)


register_auto_classes()
