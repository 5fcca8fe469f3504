"""Kill-and-resume: a run stopped after step k and resumed ends with the uninterrupted run's weights.

Stage 2 (random region and text choices), gradient accumulation, an epoch boundary inside the run, a
crash between checkpoints, and a data-loader worker in one of the runs but not the other.
"""

from dataclasses import replace

import pytest
from safetensors.torch import load_file

from fgclip.train import checkpoint as ckpt
from fgclip.train.engine import PlainEngine
from fgclip.train.loop import train
from tests.train.conftest import read_metrics, small_config


def weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        difference = (a[name].float() - b[name].float()).abs().max().item()
        assert difference <= atol, f"{name} differs by {difference}"


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


def test_resume_refuses_an_incompatible_run(tmp_path, synthetic_set, tiny_init):
    config = small_config(synthetic_set / "train.jsonl", tiny_init, tmp_path / "run", max_steps=2)
    train(config)
    with pytest.raises(ckpt.ResumeError, match="batch_size"):
        train(replace(config, batch_size=2, max_steps=4, resume="latest"))
    with pytest.raises(ckpt.ResumeError, match="no checkpoint"):
        train(replace(config, output_dir=str(tmp_path / "empty"), resume="latest"))
