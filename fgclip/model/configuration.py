"""Configuration of FG-CLIP: a `CLIPConfig` plus the few numbers the fine-grained parts need."""

from __future__ import annotations

from transformers import CLIPConfig

from fgclip.hf_files import CLIP_SPECIAL_TOKEN_IDS, SpecialTokenIds
from fgclip.model.positions import stretched_length

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
    short_text_groups (`int`, defaults to 1):
        A speed lever of `FGCLIPModel.forward`: the step's short texts (captions, region captions, hard
        negatives) are encoded in at most this many length groups, each padded only to its own longest
        (`fgclip.model.text_groups`). The result is exactly the same; a stage-2 step, whose thousands of short
        texts are mostly padding when padded to the longest of the batch, gets faster (8 is a good value,
        see benchmarks/RESULTS.md). 1: one tensor, as CLIP does.
    """

    model_type = "fgclip"

    long_text_keep_positions: int = 20
    region_logit_scale_init_value: float | None = None
    hard_negative_logit_scale_init_value: float | None = None
    short_text_groups: int = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not isinstance(self.short_text_groups, int) or self.short_text_groups < 1:
            raise ValueError(f"short_text_groups must be a positive integer, got {self.short_text_groups!r}")
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
