"""End to end through the real launchers: `deepspeed` with 2 processes (ZeRO-2, gloo on CPU) for stage 1
(stopped by SIGTERM sent to the whole job, then resumed) and stage 2 in bf16; `torchrun` with 2 processes,
which must reach bitwise the weights of the stopped-and-resumed DeepSpeed run; plain `python` with 1.

The first DeepSpeed launch on a fresh machine JIT-builds DeepSpeed's small shared-memory op (about a minute).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fgclip import FGCLIPModel
from tests.processes import group_runs
from tests.train.conftest import final_weights, max_difference, read_metrics

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "scripts" / "pretrain_fgclip.py")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deepspeed_command(port: int | None = None) -> list[str]:
    found = shutil.which("deepspeed")
    launcher = [found] if found else [sys.executable, "-m", "deepspeed.launcher.runner"]
    return launcher + ["--num_gpus", "2", "--master_port", str(port or free_port()), SCRIPT]


def run(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def common(data: Path, init: Path, out: Path, stage: int, steps: int) -> list[str]:
    return [
        "--stage",
        str(stage),
        "--data",
        str(data),
        "--init",
        str(init),
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--batch_size",
        "4",
        "--lr",
        "1e-3",
        "--warmup_steps",
        "2",
        "--log_every",
        "1",
        "--no_progress",
    ]


def mean_loss(metrics: list[dict], part: slice) -> float:
    losses = [m["loss"] for m in metrics][part]
    return sum(losses) / len(losses)


STAGE1_STEPS = 8


@pytest.fixture(scope="module")
def deepspeed_stage1(tmp_path_factory, synthetic_set, tiny_init):
    """Stage 1 with 2 DeepSpeed processes, stopped by SIGTERM to the whole job after step 3, then resumed."""
    data = synthetic_set / "train.jsonl"
    out = tmp_path_factory.mktemp("deepspeed") / "stage1"
    log = out.parent / "stopped.log"
    job = subprocess.Popen(
        deepspeed_command() + common(data, tiny_init, out, 1, STAGE1_STEPS) + ["--save_every", "4"],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 400
    while len(read_metrics(out) if (out / "metrics.jsonl").is_file() else []) < 3:
        assert job.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGTERM)  # as SLURM's scancel and Kubernetes do: every process of the job
    job.wait(120)
    while group_runs(job.pid):  # the launcher's children end after saving
        assert time.time() < deadline
        time.sleep(0.1)
    stopped = log.read_text()
    resumed = run(
        deepspeed_command()
        + common(data, tiny_init, out, 1, STAGE1_STEPS)
        + ["--save_every", "4", "--resume", "latest"]
    )
    return out, stopped, resumed.stdout + resumed.stderr


def test_deepspeed_two_processes_sigterm_resume_then_stage2(deepspeed_stage1, tiny_init, synthetic_set):
    stage1, stopped, resumed = deepspeed_stage1
    said = [line for line in stopped.splitlines() if line.startswith("stopped by SIGTERM after step ")]
    assert len(said) == 1, stopped[-3000:]  # rank 0 says it once
    step = int(said[0].split("after step ")[1].split()[0])
    checkpoint = stage1 / "checkpoints" / f"step-{step:08d}"
    assert f"checkpoint saved in {checkpoint}" in said[0]
    # ZeRO-2 really partitions: one optimizer-state shard per rank
    assert sorted(p.name for p in checkpoint.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert f"resumed from {checkpoint} at step {step}" in resumed
    metrics = read_metrics(stage1)
    assert [m["step"] for m in metrics] == list(range(1, STAGE1_STEPS + 1))
    assert mean_loss(metrics, slice(-3, None)) < mean_loss(metrics, slice(0, 3))
    summary = json.loads((stage1 / "summary.json").read_text())
    assert summary["engine"] == "deepspeed" and summary["world_size"] == 2 and summary["steps"] == STAGE1_STEPS

    stage2 = stage1.parent / "stage2"
    port = free_port()
    run(deepspeed_command(port) + common(synthetic_set / "train.jsonl", stage1 / "final", stage2, 2, 6) + ["--bf16"])
    # DeepSpeed leaves its CPU all-reduce buffers (66 MB of RAM each) in /dev/shm; the run removed them
    assert list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*")) == []
    metrics = read_metrics(stage2)
    assert {"loss_region", "loss_hard"} <= set(metrics[0])
    model = FGCLIPModel.from_pretrained(stage2 / "final")
    assert model.dtype == torch.float32  # rebuilt from ZeRO's fp32 master weights, not the bf16 copy
    before = FGCLIPModel.from_pretrained(stage1 / "final")
    assert not torch.equal(model.logit_scale_hard, before.logit_scale_hard)
    # the frozen long-text table is exactly the one training started from
    assert torch.equal(model.long_text_positions.original, before.long_text_positions.original)


def test_torchrun_two_processes_reach_the_deepspeed_runs_weights_bitwise(
    deepspeed_stage1, tmp_path, synthetic_set, tiny_init
):
    """Same seed and arguments, 2 processes, uninterrupted (torchrun) vs stopped and resumed (deepspeed)."""
    stage1, _, _ = deepspeed_stage1
    out = tmp_path / "torchrun"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        SCRIPT,
    ] + common(synthetic_set / "train.jsonl", tiny_init, out, 1, STAGE1_STEPS)
    run(command)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "deepspeed" and summary["world_size"] == 2 and summary["deterministic"]
    assert max_difference(final_weights(out), final_weights(stage1)) == 0.0


def test_plain_python_one_process_and_one_line_errors(tmp_path, synthetic_set, tiny_init):
    out = tmp_path / "plain"
    run([sys.executable, SCRIPT] + common(synthetic_set / "train.jsonl", tiny_init, out, 1, 3))
    assert json.loads((out / "summary.json").read_text())["engine"] == "plain"
    FGCLIPModel.from_pretrained(out / "final")

    failed = subprocess.run(
        [sys.executable, SCRIPT, "--data", str(tmp_path / "nope.jsonl"), "--init", "tiny"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"error: data path not found: {tmp_path / 'nope.jsonl'}"]
