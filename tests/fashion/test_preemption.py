"""The finetuning command on the shared runner: SIGTERM saves a checkpoint and exits 143, `--resume latest` ends
with the uninterrupted run's weights bitwise; undecodable images found while training stop the run on evidence,
after a checkpoint."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fgclip.cli import run
from fgclip.fashion.cli import main
from tests.fashion.test_train import retrieval_args, validated_every
from tests.train.test_preemption import Run

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "scripts" / "finetune_fashion.py")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_checkpoints_and_the_resumed_run_reaches_the_uninterrupted_weights(products, tiny_towers_dir, tmp_path):
    common = ["--max_steps", "12", "--save_every", "1", "--log_every", "1", "--save_total_limit", "1"]
    common += validated_every(products, 4)
    assert main(retrieval_args(products, tiny_towers_dir, tmp_path / "whole", *common)) == 0
    out = tmp_path / "cut"
    metrics = out / "metrics.jsonl"
    first = Run.__new__(Run)  # the pretraining tests' launcher, for this script
    first.log = tmp_path / "1.log"
    first.process = subprocess.Popen(
        [sys.executable, SCRIPT, *retrieval_args(products, tiny_towers_dir, out, *common)],
        cwd=REPO,
        stdout=first.log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    first.wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3)
    first.signal(signal.SIGTERM)
    assert first.finish() == 143, first.log.read_text()[-3000:]
    said = [line for line in first.log.read_text().splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and said[0].startswith("stopped by SIGTERM after step ") and "--resume latest" in said[0]
    assert json.loads((out / "summary.json").read_text())["status"] == "stopped: SIGTERM"
    assert not (out / "final").exists()
    assert main(retrieval_args(products, tiny_towers_dir, out, *common, "--resume", "latest")) == 0
    for folder in ("final", "best"):
        whole = load_file(tmp_path / "whole" / folder / "model.safetensors")
        resumed = load_file(out / folder / "model.safetensors")
        for name, value in whole.items():
            torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=f"{folder}: {name}")


def test_undecodable_images_stop_the_run_after_a_whole_pass_with_a_checkpoint(
    products, tiny_towers_dir, tmp_path, capsys
):
    items = [json.loads(line) for line in (products / "fashiongen" / "train.jsonl").read_text().splitlines()]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    broken_products = sorted({item["product_id"] for item in items})[:8]
    for item in items:  # absolute paths; every image of 8 products is undecodable: found only while training
        item["image"] = (
            str(broken)
            if item["product_id"] in broken_products
            else str((products / "fashiongen" / item["image"]).resolve())
        )
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    argv = retrieval_args(products, tiny_towers_dir, tmp_path / "run", "--epochs", "2", "--max_bad_fraction", "0.2")
    argv[argv.index("--data") + 1] = str(data)
    assert run(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreadable_image" in err[0] and "after a whole pass over the data" in err[0]
    assert "checkpoint of step" in err[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped: too many bad records" and summary["bad_by_reason"]["unreadable_image"] >= 8
    assert (tmp_path / "run" / "checkpoints" / "latest").is_file() and not (tmp_path / "run" / "final").exists()
