"""Configuration of FG-CLIP: a `CLIPConfig` plus the few numbers the fine-grained parts need."""

from __future__ import annotations

from transformers import CLIPConfig

from fgclip.model.positions import stretched_length
from fgclip.tokenizer import CLIP_SPECIAL_TOKEN_IDS, SpecialTokenIds

# The end-of-text id the Hub's OpenAI CLIP configs have kept since 2021 (bos 0, eos 2, pad 1): a placeholder,
# not the tokenizer's id. In CLIP's vocabulary 2 is "#", so pooling there would be wrong without an error.
LEGACY_CLIP_EOS_TOKEN_ID = 2


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

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Folders written before the special tokens were read from the tokenizer carry the legacy ids.
        if self.text_config.eos_token_id == LEGACY_CLIP_EOS_TOKEN_ID:
            self.set_special_token_ids(CLIP_SPECIAL_TOKEN_IDS)

    def set_special_token_ids(self, ids: SpecialTokenIds) -> None:
        """Make the text config carry the tokenizer's real ids (the model pools at the first `eos`)."""
        self.text_config.bos_token_id = ids.bos
        self.text_config.eos_token_id = ids.eos
        self.text_config.pad_token_id = ids.pad

    @property
    def special_token_ids(self) -> SpecialTokenIds:
        text = self.text_config
        return SpecialTokenIds(bos=text.bos_token_id, eos=text.eos_token_id, pad=text.pad_token_id)

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
