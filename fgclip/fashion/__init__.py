"""Fashion-FINE (ECCV 2024) on FG-CLIP towers: global + local embeddings, image-text matching and
text-guided composition (`modeling`), its losses (`losses`), readers for FashionGen and FashionIQ as
released (`data`), a synthetic product set (`synthetic`) and the finetuning command (`config`, `train`, `cli`).

Importing this package is light (no torch), so that the commands inside it answer `--help` at once: the
public names below load on first use. Using the model (`from fgclip.fashion import FashionFINEModel`, or
`fgclip.fashion.modeling`) registers the `fashion_fine` model type with transformers' Auto classes, as
`fgclip.model` does for `fgclip` (see `fgclip.auto`).
"""

from __future__ import annotations

from fgclip.lazy import lazy_exports

_EXPORTS = {
    "FashionFINEConfig": "fgclip.fashion.configuration",
    "FashionFINEModel": "fgclip.fashion.modeling",
    "FashionFINEOutput": "fgclip.fashion.modeling",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
