"""fgclip.pipeline: the FineHARD-style data engine.

raw images -> captions -> referring expressions -> grounded boxes -> hard negatives -> filters -> records
(shared/spec/data-format.md), sharded and resumable, on local workers or Ray Data.
Run it as `python -m fgclip.pipeline --help`; from Python, `run_pipeline(PipelineConfig(...), output_dir, ...)`.
Importing this package loads no torch (the steps load their libraries when they run), so `--help` is instant.
"""

from fgclip.pipeline.config import (
    STEP_ORDER,
    CaptionConfig,
    ExpressionConfig,
    FilterConfig,
    GroundingConfig,
    ModelLoading,
    NegativeConfig,
    PipelineConfig,
    RunConfig,
)
from fgclip.pipeline.negatives import RuleNegativeGenerator, object_noun, validate_negatives
from fgclip.pipeline.runner import run_pipeline

__all__ = [
    "STEP_ORDER",
    "CaptionConfig",
    "ExpressionConfig",
    "FilterConfig",
    "GroundingConfig",
    "ModelLoading",
    "NegativeConfig",
    "PipelineConfig",
    "RuleNegativeGenerator",
    "RunConfig",
    "object_noun",
    "run_pipeline",
    "validate_negatives",
]
