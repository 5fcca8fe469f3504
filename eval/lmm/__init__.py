"""Shared pieces of the LMM evaluations (POPE, attributes, localisation): their question readers and options.

Running a LLaVA folder, the yes/no rule and the box convention live below `eval` in `fgclip.lmm` (shared with
`lmm_integration`).
"""
