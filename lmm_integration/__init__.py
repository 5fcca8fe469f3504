"""FG-CLIP as the vision tower of LLaVA-style models.

    lmm_integration.build      build / tower-swap a transformers `LlavaForConditionalGeneration`
    lmm_integration.train      stage A (projector) and stage B (instruction tuning), DeepSpeed ZeRO-2, LoRA/QLoRA
    lmm_integration.chat       ask a built or finetuned model about an image
    lmm_integration.tower      the vision-tower class of the original LLaVA codebase
    lmm_integration.miniature  the whole path on CPU with tiny models

Importing the package registers the dense FG-CLIP tower type ("fgclip_dense_vision") with transformers'
Auto classes, which LLaVA folders built with `--vision-features dense` need. Nothing else is imported
here, so `lmm_integration.tower` stays importable next to the old transformers the original LLaVA pins.
"""

from lmm_integration.dense_tower import register_auto_classes

register_auto_classes()
