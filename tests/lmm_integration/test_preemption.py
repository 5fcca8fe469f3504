"""scripts/finetune_llava.sh stopped as Kubernetes stops a job (SIGTERM to the script, PID 1 of a pod) during
stage A on 2 DeepSpeed processes: the stage saves a checkpoint and says where, the script exits 143 without
starting stage B, and the same command run again continues stage A from the checkpoint (the re-run is given
STAGES=A, a later KEY=VALUE wins, to spare the test a stage-B launch)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lmm_integration.conftest import free_port, write_colour_set
from tests.processes import is_zombie

REPO = Path(__file__).resolve().parents[2]


def _script(out: Path, model: Path, data: Path, log: Path, port: int, *more: str) -> subprocess.Popen:
    settings = [
        f"BUILT={model}",
        f"OUT={out}",
        f"PRETRAIN_DATA={data}",
        f"FINETUNE_DATA={data}",
        "NUM_GPUS=2",
        f"MASTER_PORT={port}",
        "BATCH_A=2",
        "BATCH_B=2",
        "MAX_STEPS_A=12",
        "MAX_STEPS_B=1",
        "MAX_LEN=512",
        "NUM_WORKERS=1",
        "BF16=0",
        "GRAD_CKPT=0",
        "EXTRA_ARGS=--logging-steps 1 --warmup-ratio 0",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.Popen(
        ["bash", str(REPO / "scripts" / "finetune_llava.sh"), *settings, *more],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _finish(script: subprocess.Popen, log: Path, timeout: float) -> int:
    """The script's exit code; if it has not ended within `timeout`, what every process of the run was doing
    goes into the failure (the processes are then killed, so that a hang does not outlive the test)."""
    try:
        return script.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        processes = subprocess.run(["ps", "-e", "-o", "pid,ppid,pgid,stat,etime,args"], capture_output=True, text=True)
        ours = [line[:240] for line in processes.stdout.splitlines() if "lmm_integration.train" in line]
        subprocess.run(["pkill", "-KILL", "-f", f"output_dir {log.parent}"], check=False)
        script.kill()
        raise AssertionError("the script did not end:\n" + "\n".join(ours) + "\n" + log.read_text()[-4000:]) from None


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_stops_a_stage_with_a_checkpoint_and_the_same_command_continues(llava_dir, tmp_path):
    data = write_colour_set(tmp_path / "colours", count=8)
    out, metrics = tmp_path / "run", tmp_path / "run" / "stage_a" / "metrics.jsonl"
    port = free_port()
    first = _script(out, llava_dir, data, tmp_path / "first.log", port)
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.05)
    buffers = f"deepspeed_allreduce_buffer_*_{port}_*"  # DeepSpeed's CPU all-reduce buffers, one per rank
    assert len(list(Path("/dev/shm").glob(buffers))) == 2
    first.send_signal(signal.SIGTERM)
    assert _finish(first, tmp_path / "first.log", timeout=300) == 143
    log = (tmp_path / "first.log").read_text()
    checkpoints = sorted((out / "stage_a").glob("checkpoint-*"))
    assert len(checkpoints) == 1, log[-3000:]
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 1 <= stopped_at < 12 and _steps(metrics) == list(range(1, stopped_at + 1))
    assert f"stage A stopped by SIGTERM after step {stopped_at}: checkpoint saved in {checkpoints[0]}" in log
    assert "run the same command again to continue" in log
    assert not (out / "stage_a" / "final").exists() and not (out / "stage_b").exists()

    again = _script(out, llava_dir, data, tmp_path / "again.log", port, "STAGES=A")
    assert _finish(again, tmp_path / "again.log", timeout=400) == 0, (tmp_path / "again.log").read_text()[-3000:]
    log = (tmp_path / "again.log").read_text()
    assert f"resuming stage A from {checkpoints[0]}" in log
    assert _steps(metrics) == list(range(1, 13))  # continued from the checkpoint: no step trained twice or skipped
    info = json.loads((out / "stage_a" / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 12
    assert (out / "stage_a" / "final" / "config.json").is_file()
    # both runs (the stopped one and the finished one) removed DeepSpeed's CPU all-reduce buffers from /dev/shm
    assert list(Path("/dev/shm").glob(buffers)) == []


def test_the_script_does_not_wait_for_a_zombie_of_the_stopped_run():
    """After a stop the script waits until no process of the run's group is left. A zombie is not a process that
    runs: where PID 1 is slow to reap orphans (containers), counting zombies as `kill -0 -- -PGID` does would keep
    the script waiting after every training process has saved and exited."""
    script = (REPO / "scripts" / "finetune_llava.sh").read_text()
    start = script.index("group_alive() {")
    function = script[start : script.index("\n}\n", start) + 3]
    child = os.fork()
    if child == 0:  # a group of one process that ends at once and is not reaped: a zombie leading its group
        os.setsid()
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not is_zombie(child):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ask = function + 'group_alive "$1"'
        assert subprocess.run(["bash", "-c", f"kill -0 -- -{child}"]).returncode == 0  # what the script used to ask
        assert subprocess.run(["bash", "-c", ask, "-", str(child)]).returncode == 1
        assert subprocess.run(["bash", "-c", ask, "-", str(os.getpgid(0))]).returncode == 0  # this test's own group
    finally:
        os.waitpid(child, 0)
