"""fgclip: fine-grained CLIP (FG-CLIP) - model, losses, data, training and conversions.

Importing `fgclip` registers the `fgclip` model type with transformers' Auto classes, so
`AutoConfig` / `AutoModel.from_pretrained` load this project's folders without `trust_remote_code`.
The trainer (`fgclip.train`) and the data engine (`fgclip.pipeline`) are not imported here.
"""

from transformers import AutoConfig, AutoModel

from fgclip.fashion import FashionFINEConfig, FashionFINEModel
from fgclip.losses import FGCLIPLoss, LossInputs, LossWeights
from fgclip.model import FGCLIPConfig, FGCLIPModel
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.transforms import image_processor, image_transform

AutoConfig.register(FGCLIPConfig.model_type, FGCLIPConfig, exist_ok=True)
AutoModel.register(FGCLIPConfig, FGCLIPModel, exist_ok=True)
AutoConfig.register(FashionFINEConfig.model_type, FashionFINEConfig, exist_ok=True)
AutoModel.register(FashionFINEConfig, FashionFINEModel, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "FashionFINEConfig",
    "FashionFINEModel",
    "FGCLIPConfig",
    "FGCLIPModel",
    "FGCLIPTokenizer",
    "FGCLIPLoss",
    "LossInputs",
    "LossWeights",
    "image_processor",
    "image_transform",
]
