"""The weights of FG-CLIP's four loss terms: a config (and the pretraining command's options) without torch,
so the command answers `--help` before torch loads. `fgclip.losses` uses them."""

from __future__ import annotations

from dataclasses import dataclass

from fgclip.cli import non_negative_float, option


@dataclass
class LossWeights:
    """Weights of the four terms; the defaults are FG-CLIP's (stage 1 uses only the first two)."""

    long: float = option("global loss, long captions", 1.0, name="long_weight", type=non_negative_float)
    short: float = option("global loss, short captions", 1.0, name="short_weight", type=non_negative_float)
    region: float = option("regional loss (stage 2)", 0.1, name="region_weight", type=non_negative_float)
    hard: float = option("hard-negative loss (stage 2)", 0.5, name="hard_weight", type=non_negative_float)
