"""The local engine across processes: N CPU workers give the same output as one, and a run killed
mid-way (SIGKILL, the shard in flight lost) resumes to the same output as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgclip.pipeline.config import PipelineConfig, RunConfig
from fgclip.pipeline.engine import plan_devices
from fgclip.pipeline.steps import StepRun
from tests.pipeline.conftest import make_images, run_cli, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def test_plan_devices_on_cpu():
    config = PipelineConfig(run=RunConfig(workers=3))
    assert plan_devices(StepRun("out", "negatives", "input", config)) == ["cpu", "cpu", "cpu"]
    assert plan_devices(StepRun("out", "filter", "input", PipelineConfig())) == ["cpu"]


@pytest.mark.slow
def test_two_worker_processes_equal_one(record_file, tmp_path):
    args = ["--input", str(record_file), "--steps", "expressions", "--shard_size", "2"]
    assert run_cli(args + ["--output_dir", str(tmp_path / "one")]) == 0
    assert run_cli(args + ["--output_dir", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert (tmp_path / "two" / "data.jsonl").read_text() == (tmp_path / "one" / "data.jsonl").read_text()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(tmp_path, tiny_llava_dir):
    paths = make_images(tmp_path / "images", 16)
    records = write_jsonl(tmp_path / "records.jsonl", [{"image": str(p)} for p in paths])
    args = [
        "--input",
        str(records),
        "--steps",
        "captions",
        "--shard_size",
        "1",
        "--caption_model",
        str(tiny_llava_dir),
        "--caption_max_new_tokens",
        "16",
    ]
    command = [sys.executable, "-m", "fgclip.pipeline", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        command + ["--output_dir", str(interrupted)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    markers = interrupted / "shards" / "captions"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(list(markers.glob("*.done"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(markers.glob("*.done")))
    assert 3 <= finished < 16, "the run should be killed part-way"
    assert not (interrupted / "data.jsonl").exists()

    done_before = {p.name: p.stat().st_mtime_ns for p in markers.glob("*.done")}
    resumed = subprocess.run(
        command + ["--output_dir", str(interrupted)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    # The shards finished before the kill were not redone.
    assert {
        n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in markers.glob("*.done")) if n in done_before
    } == done_before
    clean = subprocess.run(
        command + ["--output_dir", str(tmp_path / "clean")], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    assert (interrupted / "data.jsonl").read_text() == (tmp_path / "clean" / "data.jsonl").read_text()


@pytest.mark.slow
def test_ray_engine_matches_local_and_resumes(record_file, tmp_path):
    pytest.importorskip("ray.data")
    import ray

    args = ["--input", str(record_file), "--steps", "negatives", "--shard_size", "4"]
    assert run_cli(args + ["--output_dir", str(tmp_path / "local")]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        assert run_cli(args + ["--output_dir", str(out), "--engine", "ray", "--workers", "2"]) == 0
        assert (out / "data.jsonl").read_text() == (tmp_path / "local" / "data.jsonl").read_text()
        # Both engines use the same shard files: a lost shard is redone by Ray, the rest skipped.
        (out / "shards" / "negatives" / "shard-00001.done").unlink()
        kept = (out / "shards" / "negatives" / "shard-00000.done").stat().st_mtime_ns
        assert run_cli(args + ["--output_dir", str(out), "--engine", "ray"]) == 0
        assert (out / "shards" / "negatives" / "shard-00000.done").stat().st_mtime_ns == kept
        assert (out / "data.jsonl").read_text() == (tmp_path / "local" / "data.jsonl").read_text()
    finally:
        ray.shutdown()
