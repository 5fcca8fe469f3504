"""Configuration of FG-CLIP: a `CLIPConfig` plus the few numbers the fine-grained parts need."""

from __future__ import annotations

from transformers import CLIPConfig

from fgclip.model.positions import stretched_length


class FGCLIPConfig(CLIPConfig):
    r"""CLIP configuration with FG-CLIP's long-text and fine-grained settings.

    long_text_keep_positions (`int`, defaults to 20):
        Slots of the short position table that the long table keeps as they are (and frozen).
    region_logit_scale_init_value (`float`, *optional*):
        Initial log temperature of the regional loss; `None` means the global one.
    hard_negative_logit_scale_init_value (`float`, *optional*):
        Initial log temperature of the hard-negative loss; `None` means the global one.
    """

    model_type = "fgclip"

    long_text_keep_positions: int = 20
    region_logit_scale_init_value: float | None = None
    hard_negative_logit_scale_init_value: float | None = None

    @property
    def long_max_position_embeddings(self) -> int:
        """Slots of the long-text position table (248 for CLIP's 77)."""
        return stretched_length(self.text_config.max_position_embeddings, self.long_text_keep_positions)

    @property
    def short_max_position_embeddings(self) -> int:
        return self.text_config.max_position_embeddings

    def initial_logit_scales(self) -> tuple[float, float, float]:
        """(global, regional, hard-negative) initial log temperatures."""
        base = float(self.logit_scale_init_value)
        region = self.region_logit_scale_init_value
        hard = self.hard_negative_logit_scale_init_value
        return base, float(base if region is None else region), float(base if hard is None else hard)
