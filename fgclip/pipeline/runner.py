"""Runs the requested steps over the shards, then writes `OUT/data.jsonl`, the stats and (optionally)
webdataset shards. Steps run one after another over all shards, so a worker holds one model at a time
(a 19B captioner and a 70B LM never share a GPU). Importing this module loads no torch: the engines and the
steps load what they need when they run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.data.schema import write_records
from fgclip.errors import UserError
from fgclip.pipeline.config import STEP_ORDER, PipelineConfig
from fgclip.pipeline.inputs import split_input
from fgclip.pipeline.shards import ShardLayout
from fgclip.pipeline.stats import RecordStats, write_stats
from fgclip.pipeline.steps import ShardResult, StepRun, step_settings


@dataclass
class RunReport:
    stats: dict = field(default_factory=dict)
    failed: list[ShardResult] = field(default_factory=list)
    data_file: Path | None = None


def _check_settings(layout: ShardLayout, config: PipelineConfig, step: str) -> None:
    """Refuse to mix shards made with other settings into this run's output. A setting added to the engine after
    the earlier run compares as its default (what that run used)."""
    settings = step_settings(config, step)
    previous = layout.step_settings(step)
    if previous is not None and layout.has_outputs(step):
        previous = {**step_settings(PipelineConfig(), step), **previous}
        changed = sorted(k for k in settings if settings[k] != previous[k])
        if changed:
            raise UserError(
                f"step {step!r} already has outputs in {layout.stage_dir(step)} made with other settings "
                f"({', '.join(changed)}); pass --redo {step} to recompute it, or --fresh"
            )
    layout.write_step_settings(step, settings)


def _engine(name: str):
    if name == "local":
        from fgclip.pipeline.engine import run_local

        return run_local
    if name == "ray":
        from fgclip.pipeline.ray_engine import run_ray

        return run_ray
    raise UserError(f"unknown engine {name!r}; use local or ray")


def run_pipeline(
    config: PipelineConfig,
    out_dir: str | Path,
    *,
    images: str | Path | None = None,
    input_file: str | Path | None = None,
) -> RunReport:
    """Run `config.steps` over raw `images` (a folder, one image or a list file) or the records of `input_file`,
    writing into `out_dir`; a re-run resumes (`config.run.fresh` / `config.run.redo` start over)."""
    steps = config.steps
    if not steps:
        raise UserError(f"no steps to run; choose from {', '.join(STEP_ORDER)}")
    if config.run.engine == "local":  # on Ray the GPUs are the cluster's, not this machine's
        from fgclip.pipeline.runtime import check_device

        check_device(config.run.device)
    layout = ShardLayout(out_dir)
    if config.run.fresh:
        layout.remove_all()
    for step in config.run.redo:  # a recomputed step makes every later step's outputs stale
        for later in STEP_ORDER[STEP_ORDER.index(step) :]:
            layout.remove_stage(later)
    manifest = split_input(
        layout,
        images=images,
        input_file=input_file,
        shard_size=config.run.shard_size,
        max_bad_fraction=config.run.max_bad_fraction,
    )
    num_shards = manifest["num_shards"]
    if images is not None:  # raw images have no captions and no regions: say so before any model work starts
        for step, option in (("captions", "--caption_model"), ("grounding", "--grounding_model")):
            if step in steps and not config.step_config(step).model:
                raise UserError(
                    f"raw images need a model for the {step} step: pass {option} (or leave the step out with --steps)"
                )
    (layout.out_dir / "pipeline_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    engine = _engine(config.run.engine)
    report = RunReport()
    for step in steps:
        source = layout.source_stage(step, num_shards, steps)
        _check_settings(layout, config, step)
        pending = [index for index in range(num_shards) if not layout.is_done(step, index)]
        if not pending:
            continue
        results = engine(StepRun(str(layout.out_dir), step, source, config), pending)
        report.failed = [result for result in results if result.error]
        if report.failed:
            return report  # later steps need every shard of this one; a re-run retries the failures
    report.data_file, report.stats = finalize(layout, config, steps[-1], num_shards, manifest["input_counts"])
    return report


def _final_records(layout: ShardLayout, stage: str, num_shards: int, stats: RecordStats):
    for index in range(num_shards):
        records, _ = layout.read_shard(stage, index)
        for record in records:
            stats.add(record)
            yield record


def finalize(
    layout: ShardLayout, config: PipelineConfig, last_step: str, num_shards: int, input_counts: dict
) -> tuple[Path, dict]:
    """`data.jsonl` (shards concatenated in input order), `stats.json` / `stats.png`, webdataset."""
    stats = RecordStats()
    data_file = layout.out_dir / "data.jsonl"
    write_records(data_file, _final_records(layout, last_step, num_shards, stats))
    # Steps after the last one of this run may hold stale outputs of an earlier run: not counted.
    chain = STEP_ORDER[: STEP_ORDER.index(last_step) + 1]
    step_counts = {
        step: dict(layout.stage_counts(step, num_shards)) for step in chain if layout.stage_dir(step).is_dir()
    }
    if config.run.webdataset:
        step_counts["webdataset"] = _write_webdataset(
            data_file, layout.out_dir / "webdataset", config.run.webdataset_maxcount
        )
    result = write_stats(layout.out_dir, stats, input_counts, step_counts)
    return data_file, result


def _write_webdataset(data_file: Path, out_dir: Path, maxcount: int) -> dict:
    """Pack `data.jsonl` with the trainer's own shard writer, so the two never disagree on the layout."""
    from fgclip.data.shards import write_shards

    summary = write_shards([data_file], out_dir, shard_size=maxcount, progress=False)
    return {"samples": summary.written, "shards": len(summary.shards), "dropped_sample": len(summary.skipped)}
