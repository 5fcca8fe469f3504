"""Fashion-FINE (ECCV 2024) on FG-CLIP towers: global + local embeddings, image-text matching and
text-guided composition (`modeling`), its losses (`losses`), readers for FashionGen and FashionIQ as
released (`data`), a synthetic product set (`synthetic`) and the finetuning commands (`train`, `cli`).

Importing `fgclip` registers `FashionFINEConfig` / `FashionFINEModel` with transformers' Auto classes.
Only the configuration and the model are imported here; the trainer is not.
"""

from fgclip.fashion.configuration import FashionFINEConfig
from fgclip.fashion.modeling import FashionFINEModel, FashionFINEOutput

__all__ = ["FashionFINEConfig", "FashionFINEModel", "FashionFINEOutput"]
