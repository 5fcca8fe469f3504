"""Resumption and re-runs: done shards are skipped, a failed shard is redone on the next run and the
output equals an uninterrupted run's, settings changes are caught, steps can run one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgclip.pipeline.negatives_step import NegativeStep
from fgclip.pipeline.shards import ShardLayout
from tests.pipeline.conftest import run_cli


def run(record_file: Path, out: Path, *extra: str) -> int:
    return run_cli(["--input", str(record_file), "--output_dir", str(out), "--shard_size", "3", *extra])


def done_times(out: Path, step: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "shards" / step).glob("*.done"))}


def test_a_failed_shard_is_redone_and_the_output_equals_an_uninterrupted_run(
    record_file, tmp_path, monkeypatch, capsys
):
    assert run(record_file, tmp_path / "clean", "--steps", "negatives", "filter") == 0
    clean = (tmp_path / "clean" / "data.jsonl").read_text()

    original = NegativeStep.__call__

    def crash_on_image_7(self, records, counts):
        if any(r.image.endswith("img_007.png") for r in records):
            raise RuntimeError("simulated crash in the shard in flight")
        return original(self, records, counts)

    monkeypatch.setattr(NegativeStep, "__call__", crash_on_image_7)
    out = tmp_path / "resumed"
    assert run(record_file, out, "--steps", "negatives", "filter") == 1
    err = capsys.readouterr().err
    assert "shard 2: RuntimeError: simulated crash" in err and "re-run" in err
    layout = ShardLayout(out)
    assert [layout.is_done("negatives", i) for i in range(4)] == [True, True, False, True]
    assert "simulated crash" in (out / "shards" / "negatives" / "shard-00002.error").read_text()
    assert not (out / "shards" / "filter").exists() and not (out / "data.jsonl").exists()

    monkeypatch.setattr(NegativeStep, "__call__", original)
    before = done_times(out, "negatives")
    assert run(record_file, out, "--steps", "negatives", "filter") == 0
    after = done_times(out, "negatives")
    assert {k: v for k, v in after.items() if k != "shard-00002.done"} == before  # finished shards untouched
    assert not (out / "shards" / "negatives" / "shard-00002.error").exists()
    assert (out / "data.jsonl").read_text() == clean


def test_a_finished_run_is_not_redone(record_file, tmp_path):
    out = tmp_path / "out"
    assert run(record_file, out, "--steps", "negatives") == 0
    before, data = done_times(out, "negatives"), (out / "data.jsonl").read_text()
    assert run(record_file, out, "--steps", "negatives") == 0
    assert done_times(out, "negatives") == before and (out / "data.jsonl").read_text() == data


def test_a_shard_without_its_marker_is_redone(record_file, tmp_path):
    """A crash between writing a shard's output and its marker leaves no marker: the shard is redone."""
    out = tmp_path / "out"
    assert run(record_file, out, "--steps", "negatives") == 0
    data = (out / "data.jsonl").read_text()
    marker = out / "shards" / "negatives" / "shard-00001.done"
    marker.unlink()
    (out / "shards" / "negatives" / "shard-00001.jsonl").write_text('{"partial": ')
    assert run(record_file, out, "--steps", "negatives") == 0
    assert marker.is_file() and (out / "data.jsonl").read_text() == data


def test_steps_one_at_a_time_equal_steps_together(record_file, tmp_path):
    assert run(record_file, tmp_path / "together", "--steps", "negatives", "filter") == 0
    assert run(record_file, tmp_path / "apart", "--steps", "negatives") == 0
    assert run(record_file, tmp_path / "apart", "--steps", "filter") == 0  # reads the negatives shards
    assert (tmp_path / "apart" / "data.jsonl").read_text() == (tmp_path / "together" / "data.jsonl").read_text()


def test_changed_settings_are_refused_until_redo(record_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(record_file, out, "--steps", "negatives") == 0
    first = (out / "data.jsonl").read_text()
    assert run(record_file, out, "--steps", "negatives", "--seed", "5") == 2
    assert "--redo negatives" in capsys.readouterr().err
    assert run(record_file, out, "--steps", "negatives", "--seed", "5", "--redo", "negatives") == 0
    assert (out / "data.jsonl").read_text() != first
    assert json.loads((out / "shards" / "negatives" / "step.json").read_text())["seed"] == 5
    # Speed-only settings may change freely.
    assert run(record_file, out, "--steps", "negatives", "--seed", "5", "--negatives_batch_size", "2") == 0


def test_a_run_made_before_a_setting_existed_is_continued(record_file, tmp_path):
    """An output folder written by an earlier version of the engine: a setting added since then compares as its
    default, a setting since removed is ignored; the finished shards are kept."""
    out = tmp_path / "out"
    assert run_cli(["--input", str(record_file), "--output_dir", str(out), "--steps", "negatives"]) == 0
    step_json = out / "shards" / "negatives" / "step.json"
    settings = json.loads(step_json.read_text())
    assert settings["dtype"] == "auto" and settings["trust_remote_code"] is False  # how the (absent) LM would load
    del settings["trust_remote_code"]
    step_json.write_text(json.dumps({**settings, "a_removed_setting": 1}))
    before = done_times(out, "negatives")
    assert run_cli(["--input", str(record_file), "--output_dir", str(out), "--steps", "negatives"]) == 0
    assert done_times(out, "negatives") == before
    assert (
        run_cli(["--input", str(record_file), "--output_dir", str(out), "--steps", "negatives", "--trust_remote_code"])
        == 2
    )  # a real change is still caught


def test_other_input_needs_fresh(record_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(record_file, out, "--steps", "negatives") == 0
    lines = record_file.read_text().splitlines()
    record_file.write_text("\n".join(lines[:5]) + "\n")
    assert run(record_file, out, "--steps", "negatives") == 2
    assert "--fresh" in capsys.readouterr().err
    assert run(record_file, out, "--steps", "negatives", "--fresh") == 0
    assert len((out / "data.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("shard_size", ["1", "5", "100"])
def test_output_does_not_depend_on_shard_size(record_file, tmp_path, shard_size):
    reference = tmp_path / "reference"
    assert run_cli(["--input", str(record_file), "--output_dir", str(reference), "--steps", "negatives", "filter"]) == 0
    out = tmp_path / f"size{shard_size}"
    assert (
        run_cli(
            [
                "--input",
                str(record_file),
                "--output_dir",
                str(out),
                "--steps",
                "negatives",
                "filter",
                "--shard_size",
                shard_size,
            ]
        )
        == 0
    )
    assert (out / "data.jsonl").read_text() == (reference / "data.jsonl").read_text()
