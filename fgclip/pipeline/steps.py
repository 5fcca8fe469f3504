"""The unit of work every engine runs: one step over one shard.

`StepRun` is plain picklable data (it crosses into worker processes and Ray actors); `ShardWorker`
builds the step's processor once per worker (models load once, on first need) and turns a shard
of the source stage into a finished shard of the step.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.pipeline.config import MODEL_STEPS, PipelineConfig
from fgclip.pipeline.shards import ShardLayout

Processor = Callable[[list[Record], Counter], list[Record]]

# Settings that change speed, not outputs: a re-run may change them freely.
_SPEED_ONLY = {"batch_size"}


@dataclass
class StepRun:
    out_dir: str
    step: str
    source: str  # the stage read: "input" or an earlier step
    config: PipelineConfig


def step_settings(config: PipelineConfig, step: str) -> dict:
    """The settings that decide a step's output (written to `step.json`, compared on re-runs): the step's own
    and, for a model step, how its model loads."""
    settings = asdict(config.step_config(step))
    if step in MODEL_STEPS:
        settings.update(asdict(config.models))
    return {k: v for k, v in settings.items() if k not in _SPEED_ONLY}


def uses_model(config: PipelineConfig, step: str) -> bool:
    """Whether the step runs a neural model that belongs on an accelerator."""
    return step in MODEL_STEPS and bool(config.step_config(step).model)


def build_processor(config: PipelineConfig, step: str, device: str) -> Processor:
    # Imported here so a worker loads only the libraries of the step it runs.
    if step == "captions":
        from fgclip.pipeline.captions import CaptionStep

        return CaptionStep(config.captions, device, config.models)
    if step == "expressions":
        from fgclip.pipeline.expressions import ExpressionExtractor

        return ExpressionExtractor(config.expressions)
    if step == "grounding":
        from fgclip.pipeline.grounding import GroundingStep

        return GroundingStep(config.grounding, device, config.models)
    if step == "negatives":
        from fgclip.pipeline.negatives_step import NegativeStep

        return NegativeStep(config.negatives, device, config.models)
    if step == "filter":
        from fgclip.pipeline.filters import FilterStep

        return FilterStep(config.filter)
    raise UserError(f"unknown step {step!r}")


@dataclass
class ShardResult:
    index: int
    records: int = 0
    error: str | None = None  # one line; the traceback is in the shard's .error file


class ShardWorker:
    """Runs one step on shards, in whichever process or actor holds it."""

    def __init__(self, run: StepRun, device: str, processor: Processor | None = None):
        self.run, self.device = run, device
        self.layout = ShardLayout(run.out_dir)
        self.processor = processor if processor is not None else build_processor(run.config, run.step, device)

    def process(self, index: int) -> ShardResult:
        """Process one shard. A `UserError` (a missing model option, a folder that holds no model) propagates: it
        hits every shard alike. Other failures are recorded in the shard's .error file and returned, so the other
        shards go on."""
        try:
            records, bad = self.layout.read_shard(self.run.source, index)
            counts: Counter = Counter()
            if bad:
                counts["dropped_bad_record"] += bad
            counts["records_in"] += len(records)
            records = self.processor(records, counts)
            counts["records_out"] += len(records)
            self.layout.write_shard(self.run.step, index, records, counts)
            return ShardResult(index, len(records))
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - a failed shard must not stop the others
            path = self.layout.write_error(self.run.step, index, traceback.format_exc())
            first_line = (str(error).splitlines() or [""])[0]
            return ShardResult(index, error=f"{type(error).__name__}: {first_line} (see {path})")
