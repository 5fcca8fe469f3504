"""FG-CLIP as the vision tower of LLaVA-style models.

    lmm_integration.build      build / tower-swap a transformers `LlavaForConditionalGeneration`
    lmm_integration.train      stage A (projector) and stage B (instruction tuning), DeepSpeed ZeRO-2, LoRA/QLoRA
    lmm_integration.chat       ask a built or finetuned model about an image
    lmm_integration.tower      the vision-tower class of the original LLaVA codebase
    lmm_integration.miniature  the whole path on CPU with tiny models

Importing the package imports nothing, so every command answers `--help` before torch loads and
`lmm_integration.tower` stays importable next to the old transformers the original LLaVA pins. LLaVA folders
built with `--vision-features dense` need the dense FG-CLIP tower type ("fgclip_dense_vision") registered with
transformers' Auto classes: `import lmm_integration.dense_tower` does it (the chat, training and miniature
commands do it themselves).
"""
