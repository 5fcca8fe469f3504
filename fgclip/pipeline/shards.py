"""The on-disk layout that makes runs resumable: per-stage shard files and done-markers.

    OUT/shards/manifest.json               input description, shard count (written last: split complete)
    OUT/shards/input/shard-00000.jsonl     the input, split into shards
    OUT/shards/<step>/step.json            the step's settings (a re-run with other settings is refused)
    OUT/shards/<step>/shard-00000.jsonl    that step's output for the shard (records format)
    OUT/shards/<step>/shard-00000.counts.json
    OUT/shards/<step>/shard-00000.done     written last: the shard is finished
    OUT/shards/<step>/shard-00000.error    the traceback of a failed attempt (removed on success)

A step's shard is done only when its marker exists; output files are written to a temporary name and
renamed, so a crash at any moment leaves either a finished shard or one that is redone.
Every engine (local processes, Ray actors) reads and writes exactly these files.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from fgclip.data.schema import BadRecord, Record, iter_record_file, write_records
from fgclip.pipeline.config import STEP_ORDER

INPUT_STAGE = "input"


def write_json_atomic(path: Path, data) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


class ShardLayout:
    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / "shards"

    # --- paths ---------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def shard_path(self, stage: str, index: int) -> Path:
        return self.stage_dir(stage) / f"shard-{index:05d}.jsonl"

    def _sibling(self, stage: str, index: int, suffix: str) -> Path:
        return self.stage_dir(stage) / f"shard-{index:05d}{suffix}"

    # --- manifest ------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path, manifest)

    # --- shards --------------------------------------------------------------------------------
    def is_done(self, stage: str, index: int) -> bool:
        return stage == INPUT_STAGE or self._sibling(stage, index, ".done").is_file()

    def all_done(self, stage: str, num_shards: int) -> bool:
        return all(self.is_done(stage, index) for index in range(num_shards))

    def read_shard(self, stage: str, index: int) -> tuple[list[Record], int]:
        """The shard's records and how many lines of it were unusable."""
        records, bad = [], 0
        for item in iter_record_file(self.shard_path(stage, index), require_captions=False):
            if isinstance(item, BadRecord):
                bad += 1
            else:
                records.append(item)
        return records, bad

    def write_shard(self, stage: str, index: int, records: list[Record], counts: Counter) -> None:
        """Output, then counts, then the done-marker: the marker's presence means all three are complete."""
        self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        write_records(self.shard_path(stage, index), records)
        write_json_atomic(self._sibling(stage, index, ".counts.json"), dict(counts))
        self._sibling(stage, index, ".error").unlink(missing_ok=True)
        write_json_atomic(self._sibling(stage, index, ".done"), {"records": len(records)})

    def write_error(self, stage: str, index: int, message: str) -> Path:
        self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        path = self._sibling(stage, index, ".error")
        path.write_text(message)
        return path

    def stage_counts(self, stage: str, num_shards: int) -> Counter:
        total: Counter = Counter()
        for index in range(num_shards):
            path = self._sibling(stage, index, ".counts.json")
            if path.is_file():
                total.update(json.loads(path.read_text()))
        return total

    # --- step settings -------------------------------------------------------------------------
    def step_settings(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "step.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_step_settings(self, stage: str, settings: dict) -> None:
        self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.stage_dir(stage) / "step.json", settings)

    def has_outputs(self, stage: str) -> bool:
        return self.stage_dir(stage).is_dir() and any(self.stage_dir(stage).glob("shard-*.done"))

    # --- stage order ---------------------------------------------------------------------------
    def source_stage(self, step: str, num_shards: int, running: tuple[str, ...]) -> str:
        """Where a step reads from: the nearest earlier step that runs now or has finished every shard."""
        for earlier in reversed(STEP_ORDER[: STEP_ORDER.index(step)]):
            if earlier in running or self.all_done(earlier, num_shards):
                return earlier
        return INPUT_STAGE

    # --- clearing ------------------------------------------------------------------------------
    def remove_stage(self, stage: str) -> None:
        shutil.rmtree(self.stage_dir(stage), ignore_errors=True)

    def remove_all(self) -> None:
        """Everything this engine wrote into the output folder (and nothing else)."""
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.out_dir / "webdataset", ignore_errors=True)
        for name in ("data.jsonl", "stats.json", "stats.png", "pipeline_config.json"):
            (self.out_dir / name).unlink(missing_ok=True)
