"""Measured speed and memory of fgclip against reference implementations in the same run.

`python -m benchmarks.run NAME` (or `python -m benchmarks.NAME`); see `benchmarks/run.py` for the list
and `benchmarks/RESULTS.md` for the figures measured so far.
"""
