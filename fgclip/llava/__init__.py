"""Running LLaVA folders: what the LMM evaluations (`eval`) and `lmm_integration` both need, below both.

    boxes       the LLaVA-1.5 pad-to-square geometry, answer-box parsing and formatting
    prompting   how a question or a conversation becomes the model's text prompt
    settings    `ChatSettings` / `GenerationSettings`: how a model is run (option dataclasses, no torch)
    generation  loading a LLaVA folder and batched generation: the one path for every LLaVA run

Nothing is imported here, so `fgclip.llava.settings` stays light for `--help`.
"""
