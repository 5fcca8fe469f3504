"""fgclip's model type in transformers' Auto classes (no `trust_remote_code` needed).

Registration happens when the model package is imported (`from fgclip import FGCLIPModel`, or any use of the
model), not at `import fgclip`: registering needs transformers' config classes, which load torch, and the
package itself must stay light so that every command answers `--help` before torch is imported. The dense LLaVA
tower type (`fgclip.model.dense_tower`) is registered with it, so LLaVA folders built with dense features load
wherever FG-CLIP does.
"""

from __future__ import annotations


def register_auto_classes() -> None:
    """Register FG-CLIP with AutoConfig, AutoModel and AutoProcessor (a CLIPProcessor: tokenizer + image
    processor), and the dense LLaVA tower with AutoConfig and AutoModel. Idempotent."""
    from transformers import AutoConfig, AutoModel, AutoProcessor, CLIPProcessor

    from fgclip.model.configuration import FGCLIPConfig
    from fgclip.model.dense_tower import FGCLIPDenseVisionConfig, FGCLIPDenseVisionModel
    from fgclip.model.modeling import FGCLIPModel

    AutoConfig.register(FGCLIPConfig.model_type, FGCLIPConfig, exist_ok=True)
    AutoModel.register(FGCLIPConfig, FGCLIPModel, exist_ok=True)
    AutoProcessor.register(FGCLIPConfig, CLIPProcessor, exist_ok=True)
    AutoConfig.register(FGCLIPDenseVisionConfig.model_type, FGCLIPDenseVisionConfig, exist_ok=True)
    AutoModel.register(FGCLIPDenseVisionConfig, FGCLIPDenseVisionModel, exist_ok=True)
