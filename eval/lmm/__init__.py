"""Shared pieces of the LMM evaluations (POPE, attributes, localisation).

`generation` answers questions in resumable batches through the one LLaVA path (`fgclip.llava.generation`);
`pope_rule` is the one place for the yes/no answer rule; the LLaVA-1.5 box convention is `fgclip.llava.boxes`.
"""
