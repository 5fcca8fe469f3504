"""Fashion-FINE (ECCV 2024) on FG-CLIP towers: global + local embeddings, image-text matching and
text-guided composition (`modeling`), its losses (`losses`), readers for FashionGen and FashionIQ as
released (`data`), a synthetic product set (`synthetic`) and the finetuning commands (`train`, `cli`).

Importing this package (or `from fgclip import FashionFINEModel`) registers the `fashion_fine` model type
with transformers' Auto classes, as `fgclip.model` does for `fgclip` (see `fgclip.auto`). Only the
configuration and the model are imported here; the trainer is not.
"""

from fgclip.fashion.configuration import FashionFINEConfig
from fgclip.fashion.modeling import FashionFINEModel, FashionFINEOutput

__all__ = ["FashionFINEConfig", "FashionFINEModel", "FashionFINEOutput"]


def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModel, AutoProcessor, CLIPProcessor

    AutoConfig.register(FashionFINEConfig.model_type, FashionFINEConfig, exist_ok=True)
    AutoModel.register(FashionFINEConfig, FashionFINEModel, exist_ok=True)
    AutoProcessor.register(FashionFINEConfig, CLIPProcessor, exist_ok=True)


_register_auto_classes()
