"""Running LLaVA models, below both `eval` and `lmm_integration`: loading a LLaVA folder and batched, resumable
generation (`generation`, `settings`, `prompting`, `answers_file`), LLaVA-1.5's pad-to-square box geometry
(`boxes`) and the public POPE yes/no rule (`pope_rule`). Nothing here imports `eval` or `lmm_integration`.
"""
