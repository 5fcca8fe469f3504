"""Shared pieces of the LMM evaluations (POPE, attributes, localisation).

`generation` loads any stock LLaVA folder and answers questions in resumable batches; `pope_rule` is the
one place for the yes/no answer rule; `boxes` is the one place for the LLaVA-1.5 box convention.
"""
