"""Reproducible and resumable runs: the same seed gives bitwise the same weights; a run stopped after step k
and resumed ends with the uninterrupted run's weights, bitwise; resuming refuses another run.

Stage 2 (random region and text choices), gradient accumulation, an epoch boundary inside the run, a
crash between checkpoints, and a data-loader worker in one of the runs but not the other.
"""

import json
from dataclasses import replace

import pytest
import torch

from fgclip.errors import UserError
from fgclip.train import checkpoint as ckpt
from fgclip.train.engine import PlainEngine, warmup_cosine
from fgclip.train.loop import train
from tests.train.conftest import final_weights, max_difference, read_metrics, records_file, small_config


def weights(run_dir):
    return final_weights(run_dir)


def assert_same_weights(a, b):
    assert max_difference(a, b) == 0.0


def test_same_seed_and_arguments_give_bitwise_the_same_weights(tmp_path, synthetic_set, wide_init):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the multi-threaded kernels are what made runs differ
    try:
        config = small_config(
            synthetic_set / "train.jsonl", wide_init, tmp_path / "a", stage=2, max_steps=3, batch_size=16
        )
        train(config)
        train(replace(config, output_dir=str(tmp_path / "b")))
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["deterministic"] is True


def test_resumed_run_reaches_the_uninterrupted_weights(tmp_path, synthetic_set, tiny_init):
    data = synthetic_set / "train.jsonl"  # 38 images: 9 batches of 4 per epoch
    base = small_config(data, tiny_init, tmp_path / "full", stage=2, max_steps=6, grad_accum=2)
    full = train(base)
    assert full.steps == 6 and full.final_dir is not None

    crashed = train(replace(base, output_dir=str(tmp_path / "resumed"), save_every=2, stop_at_step=3))
    assert crashed.stopped_early and crashed.steps == 3
    root = ckpt.checkpoint_root(tmp_path / "resumed")
    assert (root / "latest").read_text().strip() == "step-00000002"  # step 3 was lost in the "crash"

    resumed_config = replace(base, output_dir=str(tmp_path / "resumed"), save_every=2, resume="latest")
    resumed_config.data = replace(base.data, num_workers=1)  # sample order must not depend on workers
    resumed = train(resumed_config)
    assert resumed.steps == 6
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "resumed"))

    # metrics.jsonl is continuous: steps after the checkpoint are logged once, by the resumed run
    steps = [m["step"] for m in read_metrics(tmp_path / "resumed")]
    assert steps == [1, 2, 3, 4, 5, 6]
    full_losses = [m["loss"] for m in read_metrics(tmp_path / "full")]
    resumed_losses = [m["loss"] for m in read_metrics(tmp_path / "resumed")]
    assert resumed_losses == pytest.approx(full_losses, abs=1e-5)


def test_a_crash_while_saving_leaves_latest_on_the_previous_checkpoint(tmp_path, synthetic_set, tiny_init, monkeypatch):
    config = small_config(synthetic_set / "train.jsonl", tiny_init, tmp_path / "run", max_steps=4, save_every=2)
    original_save = PlainEngine.save

    def save_then_crash(self, directory, client_state):
        original_save(self, directory, client_state)
        if client_state["step"] == 4:
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(PlainEngine, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        train(config)
    root = ckpt.checkpoint_root(tmp_path / "run")
    assert (root / "latest").read_text().strip() == "step-00000002"
    assert (root / "step-00000004.partial").is_dir() and not (root / "step-00000004").exists()
    assert ckpt.resolve_resume("latest", tmp_path / "run") == root / "step-00000002"

    monkeypatch.setattr(PlainEngine, "save", original_save)
    result = train(replace(config, resume="latest"))
    assert result.steps == 4
    assert (root / "latest").read_text().strip() == "step-00000004"
    assert not (root / "step-00000004.partial").exists()


def test_resume_refuses_another_run_naming_the_difference(tmp_path, synthetic_set, tiny_init):
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 24)
    config = small_config(data, tiny_init, tmp_path / "run", max_steps=4, save_every=2, stop_at_step=2)
    train(config)
    resumed = replace(config, stop_at_step=None, resume="latest")
    with pytest.raises(UserError, match="batch_size=4, this run has 2"):
        train(replace(resumed, batch_size=2))
    with pytest.raises(
        UserError,
        match=r"optimisation.lr was 0.001 in the checkpoint's run, this run has "
        r"0.002; pass --resume_anyway",
    ):
        train(replace(resumed, optim=replace(config.optim, lr=2e-3)))
    with open(data, "a") as handle:  # the data file grows
        handle.write(data.read_text().splitlines()[0] + "\n")
    size = data.stat().st_size
    with pytest.raises(
        UserError,
        match=rf"data file {data} had [0-9,]+ bytes in the checkpoint's run and has "
        rf"{size:,} now",
    ):
        train(resumed)
    before = json.loads((tmp_path / "run" / "train_config.json").read_text())
    result = train(replace(resumed, optim=replace(config.optim, lr=2e-3), resume_anyway=True))
    assert result.steps == 4
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert recorded["optim"]["lr"] == 2e-3 and before["optim"]["lr"] == 1e-3
    [override] = recorded["resumed_anyway"]
    assert override["at_step"] == 2 and any("optimisation.lr" in d for d in override["differences"])
    assert any("num_samples" in d for d in override["differences"])
    lrs = [m["lr"] for m in read_metrics(tmp_path / "run")]
    assert lrs[1] == pytest.approx(1e-3 * warmup_cosine(2, 2, 4))
    assert lrs[2] == pytest.approx(2e-3 * warmup_cosine(3, 2, 4))  # the new peak lr from the resumed step on
