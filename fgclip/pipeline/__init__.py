"""fgclip.pipeline: the FineHARD-style data engine.

raw images -> captions -> referring expressions -> grounded boxes -> hard negatives -> filters -> records
(shared/spec/data-format.md), sharded and resumable, on local workers or Ray Data.
Run it as `python -m fgclip.pipeline --help`; from Python, `run_pipeline(PipelineConfig(...), out_dir, ...)`.
"""

from fgclip.pipeline.config import (
    STEP_ORDER,
    CaptionConfig,
    ExpressionConfig,
    FilterConfig,
    GroundingConfig,
    NegativeConfig,
    PipelineConfig,
    RunConfig,
)
from fgclip.pipeline.errors import PipelineError
from fgclip.pipeline.negatives import RuleNegativeGenerator, object_noun, validate_negatives
from fgclip.pipeline.runner import run_pipeline

__all__ = [
    "STEP_ORDER",
    "CaptionConfig",
    "ExpressionConfig",
    "FilterConfig",
    "GroundingConfig",
    "NegativeConfig",
    "PipelineConfig",
    "PipelineError",
    "RuleNegativeGenerator",
    "RunConfig",
    "object_noun",
    "run_pipeline",
    "validate_negatives",
]
