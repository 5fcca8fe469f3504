"""Real processes, real signals: kill -9 at any moment (inside a checkpoint save, at a random moment, inside the
export of final/) and SIGTERM, each followed by `--resume latest`, end with the uninterrupted run's weights,
bitwise."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgclip.train import checkpoint as ckpt
from fgclip.train.loop import train
from tests.train.conftest import final_weights, max_difference, read_metrics, run_argv, small_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "scripts" / "pretrain_fgclip.py")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
STEPS = 10


class Run:
    """One launch of the training script in its own process group (as a job scheduler starts it)."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, SCRIPT, *argv],
            cwd=REPO,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, condition, timeout: float = 240) -> bool:
        """Poll `condition` until it holds (True) or the process ends (False)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            if self.process.poll() is not None:
                return condition()
            time.sleep(0.001)
        raise AssertionError(f"timed out; log:\n{self.log.read_text()[-3000:]}")

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:  # it has already ended
            pass

    def finish(self, timeout: float = 240) -> int:
        return self.process.wait(timeout)


def partial_checkpoint(root: Path):
    return lambda: root.is_dir() and any(name.endswith(ckpt.PARTIAL_SUFFIX) for name in os.listdir(root))


def test_kill_9_anywhere_and_sigterm_then_resume_reach_the_uninterrupted_weights(tmp_path, synthetic_set, tiny_init):
    config = small_config(
        synthetic_set / "train.jsonl",
        tiny_init,
        tmp_path / "reference",
        stage=2,
        max_steps=STEPS,
        grad_accum=2,
        save_every=1,
        save_total_limit=1,
    )
    train(config)
    out = tmp_path / "run"
    argv = run_argv(
        synthetic_set / "train.jsonl",
        tiny_init,
        out,
        "--stage",
        "2",
        "--max_steps",
        str(STEPS),
        "--grad_accum",
        "2",
        "--lr",
        "1e-3",
        "--weight_decay",
        "0.01",
        "--warmup_steps",
        "2",
        "--seed",
        "11",
        "--log_every",
        "1",
        "--save_every",
        "1",
        "--save_total_limit",
        "1",
    )
    root = ckpt.checkpoint_root(out)

    # 1. kill -9 inside a checkpoint save (its folder is still `.partial`)
    first = Run(argv, tmp_path / "1.log")
    assert first.wait_for(partial_checkpoint(root)), "the run ended before any save could be caught"
    first.signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL

    # 2. SIGTERM: the step finishes, a checkpoint is saved, the run says where and exits with 143
    second = Run(argv + ["--resume", "latest"], tmp_path / "2.log")
    second.wait_for(lambda: len(read_metrics(out)) >= 3)
    second.signal(signal.SIGTERM)
    assert second.finish() == 143
    said = [line for line in (tmp_path / "2.log").read_text().splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and said[0].startswith("stopped by SIGTERM after step ")
    stopped_at = int(said[0].split("after step ")[1].split()[0])
    assert (root / "latest").read_text().strip() == ckpt.tag_for(stopped_at)
    assert f"checkpoint saved in {root / ckpt.tag_for(stopped_at)}; continue with --resume latest" in said[0]

    # 3. kill -9 at a random moment of the training (a step, a save, a log line)
    third = Run(argv + ["--resume", "latest"], tmp_path / "3.log")
    third.wait_for(lambda: "resumed from" in (tmp_path / "3.log").read_text())
    time.sleep(random.uniform(0.0, 1.5))
    third.signal(signal.SIGKILL)
    third.finish()

    # 4. kill -9 inside the export of final/ (if the run gets there before its end)
    fourth = Run(argv + ["--resume", "latest"], tmp_path / "4.log")
    if fourth.wait_for(lambda: (out / "final.partial").is_dir()):
        fourth.signal(signal.SIGKILL)
    fourth.finish()

    # 5. the last resume finishes the run
    last = Run(argv + ["--resume", "latest"], tmp_path / "5.log")
    assert last.finish() == 0, (tmp_path / "5.log").read_text()[-3000:]
    assert max_difference(final_weights(tmp_path / "reference"), final_weights(out)) == 0.0
    assert [m["step"] for m in read_metrics(out)] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in read_metrics(out)] == [m["loss"] for m in read_metrics(tmp_path / "reference")]
