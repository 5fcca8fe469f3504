"""Evaluation commands: encoder benchmarks and LMM runs, each `python -m eval.<name>`."""
