"""Self-contained model folders: the model with its tokenizer, FG-CLIP's image processor and a model card.

A folder written here loads with `FGCLIPModel.from_pretrained`, `AutoModel` / `AutoProcessor` (after
`import fgclip`) and stock transformers' tokenizer and image-processor classes, and is ready for the Hub.
The conversions (`python -m fgclip.convert`) and the trainer's final model are written this way. It sits above
the model, the tokenizer and the model card, which know nothing of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.errors import UserError
from fgclip.image_processing import image_processor
from fgclip.model_card import Provenance, write_model_card
from fgclip.tokenizer import FGCLIPTokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def save_with_processors(
    model: PreTrainedModel,
    directory: str | Path,
    tokenizer: FGCLIPTokenizer | None = None,
    provenance: Provenance | None = None,
) -> None:
    """`model` (an `FGCLIPModel`) saved with `save_pretrained`, plus the tokenizer (CLIP's unless given),
    FG-CLIP's image processor (square resize, no centre crop) and a model card (`fgclip.model_card`;
    `provenance` says how the weights came to be), so the folder is self-contained and ready for the Hub. The
    saved config carries the saved tokenizer's special-token ids, so that every later load pools where that
    tokenizer ends a text."""
    directory = Path(directory)
    tokenizer = tokenizer or FGCLIPTokenizer()
    ids = tokenizer.special_token_ids
    if ids.eos >= model.config.text_config.vocab_size:
        raise UserError(
            f"the tokenizer's end-of-text id {ids.eos} is outside the model's "
            f"{model.config.text_config.vocab_size}-token vocabulary"
        )
    model.config.set_special_token_ids(ids)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(directory)
    image_processor(model.config.vision_config.image_size).save_pretrained(str(directory))
    write_model_card(model, directory, provenance)
