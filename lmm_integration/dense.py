"""The two feature sources a LLaVA projector can read from an FG-CLIP tower.

* `hidden`: `hidden_states[vision_feature_layer]` of the stock tower (LLaVA-1.5: -2);
* `dense`: FG-CLIP's value-path patch features (`fgclip.value_path`): the last block with its attention replaced by
  the value path, then the post-layernorm, stopping before the visual projection. The projection is linear, so the
  projector's first layer absorbs it, and the projector keeps the tower's width as its input, as with `hidden`;
  no weight beyond a plain `CLIPVisionModel` is needed, so the exported tower folder stays a stock one.

Standard library only: the original-LLaVA tower class (`lmm_integration.tower`, transformers 4.37) uses it too.
"""

from __future__ import annotations

FEATURE_SOURCES = ("hidden", "dense")


def check_feature_source(source: str) -> str:
    if source not in FEATURE_SOURCES:
        raise ValueError(f"vision features must be one of {FEATURE_SOURCES}, got {source!r}")
    return source
