"""End to end through the real launchers: `deepspeed` with 2 processes (ZeRO-2, gloo on CPU) for stage 1
(stopped, then resumed) and stage 2 in bf16; `torchrun` with 2 processes; plain `python` with 1.

The first DeepSpeed launch on a fresh machine JIT-builds DeepSpeed's small shared-memory op (about a minute).
"""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fgclip import FGCLIPModel
from tests.train.conftest import read_metrics

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "scripts" / "pretrain_fgclip.py")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def deepspeed_command() -> list[str]:
    found = shutil.which("deepspeed")
    launcher = [found] if found else [sys.executable, "-m", "deepspeed.launcher.runner"]
    return launcher + ["--num_gpus", "2", "--master_port", str(free_port()), SCRIPT]


def run(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def common(data: Path, init: Path, out: Path, stage: int, steps: int) -> list[str]:
    return ["--stage", str(stage), "--data", str(data), "--init", str(init), "--output_dir", str(out),
            "--max_steps", str(steps), "--batch_size", "4", "--lr", "1e-3", "--warmup_steps", "2",
            "--log_every", "1", "--no_progress"]


def mean_loss(metrics: list[dict], part: slice) -> float:
    losses = [m["loss"] for m in metrics][part]
    return sum(losses) / len(losses)


def test_deepspeed_two_processes_stage1_resume_then_stage2(tmp_path, synthetic_set, tiny_init):
    data = synthetic_set / "train.jsonl"
    stage1 = tmp_path / "stage1"
    run(deepspeed_command() + common(data, tiny_init, stage1, 1, 10) + ["--save_every", "4", "--stop_at_step", "6"])
    checkpoint = stage1 / "checkpoints" / "step-00000004"
    assert (stage1 / "checkpoints" / "latest").read_text().strip() == checkpoint.name
    # ZeRO-2 really partitions: one optimizer-state shard per rank
    assert sorted(p.name for p in checkpoint.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    assert not (stage1 / "final").exists()

    resumed = run(deepspeed_command() + common(data, tiny_init, stage1, 1, 10) + ["--save_every", "4", "--resume", "latest"])
    assert "resumed from" in resumed.stdout + resumed.stderr
    metrics = read_metrics(stage1)
    assert [m["step"] for m in metrics] == list(range(1, 11))
    assert mean_loss(metrics, slice(-3, None)) < mean_loss(metrics, slice(0, 3))
    summary = json.loads((stage1 / "summary.json").read_text())
    assert summary["engine"] == "deepspeed" and summary["world_size"] == 2 and summary["steps"] == 10

    stage2 = tmp_path / "stage2"
    run(deepspeed_command() + common(data, stage1 / "final", stage2, 2, 10) + ["--bf16"])
    metrics = read_metrics(stage2)
    assert {"loss_region", "loss_hard"} <= set(metrics[0])
    assert mean_loss(metrics, slice(-3, None)) < mean_loss(metrics, slice(0, 3))
    model = FGCLIPModel.from_pretrained(stage2 / "final")
    assert model.dtype == torch.float32  # rebuilt from ZeRO's fp32 master weights, not the bf16 copy
    before = FGCLIPModel.from_pretrained(stage1 / "final")
    assert not torch.equal(model.logit_scale_hard, before.logit_scale_hard)
    # the frozen long-text table is exactly the one training started from
    assert torch.equal(model.long_text_positions.original, before.long_text_positions.original)


def test_torchrun_two_processes(tmp_path, synthetic_set, tiny_init):
    out = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), SCRIPT] + common(synthetic_set / "train.jsonl", tiny_init, out, 2, 3)
    run(command)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "deepspeed" and summary["world_size"] == 2
    FGCLIPModel.from_pretrained(out / "final")


def test_plain_python_one_process_and_one_line_errors(tmp_path, synthetic_set, tiny_init):
    out = tmp_path / "plain"
    run([sys.executable, SCRIPT] + common(synthetic_set / "train.jsonl", tiny_init, out, 1, 3))
    assert json.loads((out / "summary.json").read_text())["engine"] == "plain"
    FGCLIPModel.from_pretrained(out / "final")

    failed = subprocess.run([sys.executable, SCRIPT, "--data", str(tmp_path / "nope.jsonl"), "--init", "tiny"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"error: data path not found: {tmp_path / 'nope.jsonl'}"]
