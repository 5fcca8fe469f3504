"""FG-CLIP on top of Hugging Face's CLIP towers.

The image and text towers are transformers' own `CLIPVisionModel` / `CLIPTextModel`, so their weights
keep CLIP's names and a stock CLIP checkpoint loads into them unchanged. FG-CLIP adds:

* a 248-slot long-text position table (`LongTextPositions`) and a long-text projection;
* the dense patch grid: the last ViT block run with its attention replaced by the value path;
* region embeddings: RoIAlign 1x1 over that grid;
* two more learnable temperatures (regional, hard-negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align
from transformers import CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.masking_utils import create_causal_mask
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel
from transformers.utils import ModelOutput

from fgclip.errors import UserError
from fgclip.hf_files import folder_special_token_ids
from fgclip.model import conversion
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.text_groups import length_groups
from fgclip.model.vision_tower import write_vision_tower
from fgclip.value_path import value_path_features


class LongTextPositions(nn.Module):
    """The long-text position table: two stretched tables summed under masks.

    `original` serves slots ``< keep`` and is frozen (those slots equal CLIP's own table): it is a
    saved buffer, so no optimizer or `requires_grad_` call can train it. `residual` serves slots
    ``>= keep`` and is trained. Both start as the stretched short table (`conversion.derived_weights`).
    """

    def __init__(self, num_positions: int, dim: int, keep: int):
        super().__init__()
        self.keep = keep
        self.original = nn.Buffer(torch.zeros(num_positions, dim), persistent=True)
        self.residual = nn.Parameter(torch.zeros(num_positions, dim))

    @property
    def num_positions(self) -> int:
        return self.original.shape[0]

    def forward(self, length: int) -> torch.Tensor:
        """The ``(length, dim)`` table for a sequence of `length` tokens."""
        use_original = torch.arange(length, device=self.original.device)[:, None] < self.keep
        return torch.where(use_original, self.original[:length], self.residual[:length])


@dataclass
class FGCLIPOutput(ModelOutput):
    """Features of one training step. Embeddings are L2-normalised unless asked otherwise.

    image_embeds: `(B, D)` global image embeddings.
    long_text_embeds: `(B, D)` long captions, 248-slot path.
    short_text_embeds: `(N, D)` every short text of the step (short captions, region captions,
        hard negatives), 77-slot path.
    region_embeds: `(sum N_i, D)` one per box, in the order of the `boxes` list.
    logit_scale, logit_scale_region, logit_scale_hard: exponentiated temperatures (scalars).
    """

    image_embeds: torch.Tensor | None = None
    long_text_embeds: torch.Tensor | None = None
    short_text_embeds: torch.Tensor | None = None
    region_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None
    logit_scale_region: torch.Tensor | None = None
    logit_scale_hard: torch.Tensor | None = None


def _maybe_normalize(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    return F.normalize(features, dim=-1) if normalize else features


def validate_boxes(boxes: list[torch.Tensor] | tuple[torch.Tensor, ...], batch_size: int) -> None:
    """Raise a clear `ValueError` unless `boxes` is B tensors of normalised `[x1, y1, x2, y2]` rows."""
    if not isinstance(boxes, (list, tuple)) or len(boxes) != batch_size:
        raise ValueError(f"boxes must be a list of {batch_size} tensors of shape (N_i, 4), one per image")
    for index, image_boxes in enumerate(boxes):
        if image_boxes.dim() != 2 or image_boxes.shape[-1] != 4:
            raise ValueError(f"boxes[{index}] must have shape (N, 4), got {tuple(image_boxes.shape)}")
        if image_boxes.numel() == 0:
            continue
        if not torch.isfinite(image_boxes).all():
            raise ValueError(f"boxes[{index}] holds a non-finite coordinate")
        if (image_boxes < 0).any() or (image_boxes > 1).any():
            raise ValueError(f"boxes[{index}] must be normalised to [0, 1]; got values outside that range")
        if (image_boxes[:, 2] <= image_boxes[:, 0]).any() or (image_boxes[:, 3] <= image_boxes[:, 1]).any():
            raise ValueError(f"boxes[{index}] has an empty box: every box needs x1 < x2 and y1 < y2")


def _looks_like_local_path(name: str) -> bool:
    """True for what can only be a path on this machine, never a Hub id ("owner/name" or "name")."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or Path(name).exists()


class FGCLIPModel(CLIPPreTrainedModel):
    """FG-CLIP dual encoder. See the README for a short example of the API."""

    config: FGCLIPConfig
    config_class = FGCLIPConfig
    base_model_prefix = "fgclip"

    def __init__(self, config: FGCLIPConfig):
        super().__init__(config)
        text_config, vision_config = config.text_config, config.vision_config
        self.text_model = CLIPTextModel._from_config(text_config)
        self.vision_model = CLIPVisionModel._from_config(vision_config)
        self.visual_projection = nn.Linear(vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(text_config.hidden_size, config.projection_dim, bias=False)
        self.long_text_projection = nn.Linear(text_config.hidden_size, config.projection_dim, bias=False)
        self.long_text_positions = LongTextPositions(
            config.long_max_position_embeddings, text_config.hidden_size, config.long_text_keep_positions
        )
        # Values are set by _init_weights: the global one from the config, the other two derived from it.
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.logit_scale_region = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.logit_scale_hard = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    def _named_tensors(self) -> dict[str, torch.Tensor]:
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, FGCLIPModel):
            # Children are initialised first, so the short table and projection hold their final values. The
            # `init` functions leave alone what a checkpoint loaded, so only missing parts are derived.
            factor = self.config.initializer_factor
            init.normal_(module.text_projection.weight, std=module.text_model.config.hidden_size**-0.5 * factor)
            init.normal_(module.visual_projection.weight, std=module.vision_model.config.hidden_size**-0.5 * factor)
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            tensors = module._named_tensors()
            for name, value in conversion.derived_weights(tensors, self.config).items():
                init.copy_(tensors[name], value)

    @torch.no_grad()
    def reset_fine_grained_temperatures(self) -> None:
        """Start the regional and hard-negative temperatures again where a new model starts them: at the
        global one (or the config's own initial values). FG-CLIP starts stage 2 this way, after a stage 1
        that leaves both untrained."""
        tensors = self._named_tensors()
        derived = conversion.derived_weights(tensors, self.config)
        for name in ("logit_scale_region", "logit_scale_hard"):
            tensors[name].copy_(derived[name])

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> FGCLIPModel:
        """Load this project's folders, and also stock CLIP folders (FG-CLIP's own parts derived from CLIP's)
        and official FG-CLIP release folders (weights renamed on load). No `trust_remote_code` needed.

        A converted folder is read by `fgclip.model.conversion` (a config and a state dict) and loaded by
        transformers like any state dict, in float32 unless `dtype` says otherwise. Text is pooled at the
        end-of-text id of the tokenizer the folder carries (CLIP's 49407 when it has none), never at a config's
        legacy `eos_token_id: 2`. A local folder that cannot be used (not a model, a missing or damaged weight
        file, weights that do not fit its config, a tokenizer without an end-of-text token) is a one-line
        `UserError`; a name that is not a local path is looked up on the Hub.
        """
        path = Path(str(pretrained_model_name_or_path)).expanduser()
        if not path.is_dir() and _looks_like_local_path(str(pretrained_model_name_or_path)):
            conversion.detect_checkpoint_kind(path)  # one line: a file, or no such folder
        if not path.is_dir():
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        kind = conversion.detect_checkpoint_kind(path)
        if kind != "fgclip":
            config, state = conversion.converted_checkpoint(path, kind)
            cls._check_weights_fit(path, config, state)
            kwargs.setdefault("dtype", torch.float32)
            return super().from_pretrained(None, *args, config=config, state_dict=state, **kwargs)
        ids = folder_special_token_ids(path, conversion.read_text_vocab_size(path))
        loaded = super().from_pretrained(str(path), *args, **kwargs)
        # Our older folders carry the legacy ids (repaired by the config) or ids of another tokenizer.
        (loaded[0] if isinstance(loaded, tuple) else loaded).config.set_special_token_ids(ids)
        return loaded

    @classmethod
    def _check_weights_fit(cls, directory: Path, config: FGCLIPConfig, state: dict[str, torch.Tensor]) -> None:
        """`UserError` unless `state` holds exactly the model's weights in the model's shapes (checked
        on a model built on the meta device: no memory, no initialisation cost)."""
        with torch.device("meta"):
            expected = {name: tuple(tensor.shape) for name, tensor in cls(config).state_dict().items()}
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise UserError(
                f"{directory}: weights do not fit its config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise UserError(
                    f"{directory}: weights do not fit its config.json: {name} has shape "
                    f"{tuple(state[name].shape)}, the config gives {shape}"
                )

    def export_vision_tower(self, directory: str | Path) -> Path:
        """Write the image tower as a stock `CLIPVisionModel` folder (+ image processor) for LLaVA: plain
        transformers 5.x and 4.37 load it with every weight, without fgclip (`fgclip.model.vision_tower`)."""
        return write_vision_tower(self.vision_model, directory)

    # ------------------------------------------------------------------ geometry
    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @property
    def grid_size(self) -> int:
        """Patches per side of the dense grid (14 for B/16 at 224, 24 for L/14 at 336)."""
        return self.config.vision_config.image_size // self.config.vision_config.patch_size

    @property
    def eos_token_id(self) -> int:
        eos = self.config.text_config.eos_token_id
        return eos[0] if isinstance(eos, (list, tuple)) else eos

    def text_max_length(self, long: bool) -> int:
        return self.config.long_max_position_embeddings if long else self.config.short_max_position_embeddings

    # ------------------------------------------------------------------ text
    def _fit_text_length(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, limit: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Truncate ids past `limit` (keeping an EOS at the end, as CLIP's tokenizers do)."""
        if input_ids.shape[1] <= limit:
            return input_ids, attention_mask
        input_ids = input_ids[:, :limit].clone()
        lost_eos = ~(input_ids == self.eos_token_id).any(dim=1)
        input_ids[lost_eos, -1] = self.eos_token_id
        if attention_mask is not None:
            attention_mask = attention_mask[:, :limit]
        return input_ids, attention_mask

    def _text_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, long: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the text transformer with the short or long position table.

        Returns the final-layer-normed states `(N, L, C)` and the (possibly truncated) ids `(N, L)`.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (N, L), got {tuple(input_ids.shape)}")
        input_ids, attention_mask = self._fit_text_length(input_ids, attention_mask, self.text_max_length(long))
        has_eos = (input_ids == self.eos_token_id).any(dim=1)
        if not torch.compiler.is_exporting() and not has_eos.all():  # data-dependent: no check in ONNX graphs
            raise ValueError(
                f"every text must contain the EOS token {self.eos_token_id} (pooling happens there); "
                "tokenize with fgclip.tokenizer.FGCLIPTokenizer"
            )
        text_model = self.text_model
        length = input_ids.shape[1]
        if long:
            positions = self.long_text_positions(length)
        else:
            positions = text_model.embeddings.position_embedding.weight[:length]
        hidden = text_model.embeddings.token_embedding(input_ids) + positions
        # No cache; passed by position (its keyword was renamed from past_key_values to cache in transformers 5.x).
        mask = create_causal_mask(text_model.config, hidden, attention_mask, None)
        hidden = text_model.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        return text_model.final_layer_norm(hidden), input_ids

    def _text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, long: bool) -> torch.Tensor:
        """The text transformer's state at the first EOS token, `(N, C)`."""
        hidden, input_ids = self._text_hidden(input_ids, attention_mask, long)
        first_eos = (input_ids == self.eos_token_id).int().argmax(dim=-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first_eos]

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        long: bool = False,
        normalize: bool = True,
        max_groups: int = 1,
    ) -> torch.Tensor:
        """Text embeddings `(N, D)`. `long=True` uses the 248-slot table and the long projection.

        Sequences longer than the path's limit (77 or 248) are truncated, keeping a final EOS. With `max_groups`
        above 1 and a right-padded `attention_mask`, the rows are encoded in at most that many length groups,
        each trimmed to its own longest text: the same embeddings with less padding work.
        """
        right_padded = attention_mask is not None and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
        if max_groups > 1 and right_padded:
            groups = length_groups(attention_mask, max_groups)
            parts = [
                self.encode_text(input_ids[rows, :width], attention_mask[rows, :width], long, normalize)
                for rows, width in groups
            ]
            order = torch.cat([rows for rows, _ in groups])
            return torch.cat(parts)[torch.argsort(order)]
        pooled = self._text_pooled(input_ids, attention_mask, long)
        projection = self.long_text_projection if long else self.text_projection
        return _maybe_normalize(projection(pooled), normalize)

    def encode_text_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        long: bool = False,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Per-token text embeddings `(N, L, D)`: every token's final state through the path's projection.

        The token at the first EOS is `encode_text`'s embedding. Every position is returned, padding
        included (`L` is the input length, truncated to the path's limit): mask with `attention_mask`.
        Used for token-level pooling such as Fashion-FINE's local text vector.
        """
        hidden, _ = self._text_hidden(input_ids, attention_mask, long)
        projection = self.long_text_projection if long else self.text_projection
        return _maybe_normalize(projection(hidden), normalize)

    # ------------------------------------------------------------------ image
    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        size = self.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(
                f"pixel_values must have shape (B, 3, {size}, {size}) for this model, got {tuple(pixel_values.shape)}; "
                "preprocess with fgclip.transforms.image_transform(model.image_size)"
            )

    def _vision_trunk(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Hidden states entering the last ViT block (CLS first), `(B, 1 + H*W, C)`."""
        self._check_pixels(pixel_values)
        vision = self.vision_model
        hidden = vision.embeddings(pixel_values)
        hidden = vision.pre_layrnorm(hidden)
        for layer in vision.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def _global_from_trunk(self, trunk: torch.Tensor) -> torch.Tensor:
        vision = self.vision_model
        hidden = vision.encoder.layers[-1](trunk, None)
        return self.visual_projection(vision.post_layernorm(hidden[:, 0]))

    def _dense_from_trunk(self, trunk: torch.Tensor) -> torch.Tensor:
        """The value-path last block (MaskCLIP/CLIPSelf, `fgclip.value_path`), patches projected to the grid."""
        patches = self.visual_projection(value_path_features(self.vision_model, trunk)[:, 1:])
        grid = self.grid_size
        return patches.reshape(patches.shape[0], grid, grid, patches.shape[-1])

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Global image embeddings `(B, D)` (projected CLS token)."""
        return _maybe_normalize(self._global_from_trunk(self._vision_trunk(pixel_values)), normalize)

    def encode_dense(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Patch-grid embeddings `(B, H, W, D)` in the joint space, from the value-path last block."""
        return _maybe_normalize(self._dense_from_trunk(self._vision_trunk(pixel_values)), normalize)

    @staticmethod
    def pool_regions(dense: torch.Tensor, boxes: list[torch.Tensor], normalize: bool = True) -> torch.Tensor:
        """RoIAlign 1x1 over an unnormalised `(B, H, W, D)` grid for normalised `[x1, y1, x2, y2]` boxes.

        Boxes are scaled to grid units; `aligned=True` puts cell centres at integer coordinates, so a
        box covering the whole image averages every cell and a box covering one cell returns it.
        """
        batch, height, width, _ = dense.shape
        validate_boxes(boxes, batch)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=dense.device)
        grid_boxes = [image_boxes.to(device=dense.device, dtype=torch.float32) * scale for image_boxes in boxes]
        grid = dense.permute(0, 3, 1, 2).float()  # RoIAlign in fp32: bf16 kernels are not everywhere
        pooled = roi_align(grid, grid_boxes, output_size=1, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return _maybe_normalize(pooled.flatten(1).to(dense.dtype), normalize)

    def encode_regions(
        self, pixel_values: torch.Tensor, boxes: list[torch.Tensor], normalize: bool = True
    ) -> torch.Tensor:
        """Region embeddings `(sum N_i, D)` for `boxes`, a list of B `(N_i, 4)` normalised boxes."""
        validate_boxes(boxes, pixel_values.shape[0])
        return self.pool_regions(self.encode_dense(pixel_values, normalize=False), boxes, normalize)

    # ------------------------------------------------------------------ training forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        long_input_ids: torch.Tensor | None = None,
        long_attention_mask: torch.Tensor | None = None,
        short_input_ids: torch.Tensor | None = None,
        short_attention_mask: torch.Tensor | None = None,
        boxes: list[torch.Tensor] | None = None,
        normalize: bool = True,
    ) -> FGCLIPOutput:
        """Everything one training step needs, with one pass of the image tower.

        `short_input_ids` holds all short texts of the step (captions, region captions, hard
        negatives); the caller keeps the index of each. Region embeddings are computed when
        `boxes` is given.
        """
        trunk = self._vision_trunk(pixel_values)
        output = FGCLIPOutput(
            image_embeds=_maybe_normalize(self._global_from_trunk(trunk), normalize),
            logit_scale=self.logit_scale.exp(),
            logit_scale_region=self.logit_scale_region.exp(),
            logit_scale_hard=self.logit_scale_hard.exp(),
        )
        if boxes is not None:
            output.region_embeds = self.pool_regions(self._dense_from_trunk(trunk), boxes, normalize)
        if long_input_ids is not None:
            output.long_text_embeds = self.encode_text(long_input_ids, long_attention_mask, True, normalize)
        if short_input_ids is not None:
            output.short_text_embeds = self.encode_text(
                short_input_ids, short_attention_mask, False, normalize, self.config.short_text_groups
            )
        return output
