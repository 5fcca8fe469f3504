"""fgclip: fine-grained CLIP (FG-CLIP) - model, losses, data, training and conversions.

`import fgclip` is light (no torch, no transformers), so that every command answers `--help` at once: the
public names below load on first use. Using the model (`from fgclip import FGCLIPModel`) registers the
`fgclip` model type with transformers' Auto classes, after which `AutoConfig` / `AutoModel` /
`AutoProcessor.from_pretrained` read this project's folders without `trust_remote_code` (`fgclip.auto`).
The trainer (`fgclip.train`) and the data engine (`fgclip.pipeline`) are never imported here.
"""

from __future__ import annotations

from fgclip.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "FashionFINEConfig": "fgclip.fashion",
    "FashionFINEModel": "fgclip.fashion",
    "FGCLIPConfig": "fgclip.model",
    "FGCLIPModel": "fgclip.model",
    "FGCLIPTokenizer": "fgclip.tokenizer",
    "FGCLIPLoss": "fgclip.losses",
    "LossInputs": "fgclip.losses",
    "LossWeights": "fgclip.losses",
    "image_processor": "fgclip.image_processing",
    "image_transform": "fgclip.transforms",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
