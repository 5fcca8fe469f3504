"""FG-CLIP as the vision tower of LLaVA-style models.

    lmm_integration.build      build / tower-swap a transformers `LlavaForConditionalGeneration`
    lmm_integration.train      stage A (projector) and stage B (instruction tuning), DeepSpeed ZeRO-2, LoRA/QLoRA
    lmm_integration.chat       ask a built or finetuned model about an image
    lmm_integration.tower      the vision-tower class of the original LLaVA codebase

The CPU miniature of the whole path is a benchmark: `benchmarks.llava_miniature`. Nothing is imported here, so
`lmm_integration.tower` stays importable next to the old transformers the original LLaVA pins. The dense tower
type of folders built with `--vision_features dense` is registered with transformers' Auto classes where it is
used (`fgclip.auto.register_auto_classes`: every loader of the project calls it).
"""
