"""Engine pieces: the learning-rate schedule, AdamW groups, the DeepSpeed config's "auto" values."""

import json

import pytest
import torch

from fgclip import FGCLIPModel
from fgclip.errors import UserError
from fgclip.train.config import SHIPPED_DEEPSPEED_CONFIG, OptimConfig
from fgclip.train.engine import (
    PlainEngine,
    make_optimizer,
    make_scheduler,
    parameter_groups,
    resolve_deepspeed_config,
    warmup_cosine,
)
from tests.conftest import tiny_config


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110) == pytest.approx(0.0)
    assert warmup_cosine(110, 10, 110, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_scheduler_follows_the_rule():
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, OptimConfig(lr=1.0, warmup_steps=2))
    scheduler = make_scheduler(optimizer, OptimConfig(lr=1.0, warmup_steps=2), total_steps=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([warmup_cosine(s, 2, 6) for s in range(6)])


def test_weight_decay_skips_biases_norms_and_temperatures():
    model = FGCLIPModel(tiny_config())
    model.logit_scale_hard.requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is model.logit_scale for p in no_decay["params"])
    assert not any(p is model.logit_scale_hard for p in no_decay["params"])  # frozen: not optimised
    assert len(decay["params"]) + len(no_decay["params"]) == sum(p.requires_grad for p in model.parameters())


def test_shipped_zero2_config_is_the_release_one_with_autos_filled():
    shipped = json.loads(SHIPPED_DEEPSPEED_CONFIG.read_text())
    zero = shipped["zero_optimization"]
    assert zero["stage"] == 2 and zero["overlap_comm"] and zero["contiguous_gradients"]
    assert zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == 5e8
    config = resolve_deepspeed_config(None, batch_size=8, grad_accum=3, world_size=2, bf16=True, grad_clip=1.0)
    assert config["train_batch_size"] == 48 and config["train_micro_batch_size_per_gpu"] == 8
    assert config["gradient_accumulation_steps"] == 3 and config["gradient_clipping"] == 1.0
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False
    assert config["data_types"]["buffer_dtype"] == "bf16"
    assert resolve_deepspeed_config(None, 8, 1, 1, False, 1.0)["bf16"]["enabled"] is False


def test_deepspeed_config_conflicts_are_errors(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(UserError, match="optimizer"):
        resolve_deepspeed_config(path, 8, 1, 1, False, 1.0)
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 4}))
    with pytest.raises(UserError, match="train_micro_batch_size_per_gpu=4"):
        resolve_deepspeed_config(path, 8, 1, 1, False, 1.0)
    path.write_text(json.dumps({"fp16": {"enabled": True}}))
    with pytest.raises(UserError, match="fp16"):
        resolve_deepspeed_config(path, 8, 1, 1, False, 1.0)
    path.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_deepspeed_config(path, 8, 1, 1, False, 1.0)


def test_the_plain_engine_skips_an_update_with_non_finite_gradients_and_says_so(tmp_path, capsys):
    model = torch.nn.Linear(4, 2)
    engine = PlainEngine(model, OptimConfig(lr=0.1, warmup_steps=0), 10, 1, torch.device("cpu"), False)
    before = model.weight.detach().clone()
    engine.backward(model(torch.ones(1, 4)).sum())  # a finite loss ...
    model.weight.grad[0, 0] = float("inf")  # ... whose backward overflowed
    assert engine.step() is True  # an optimizer step was due: it is counted, not applied
    assert torch.equal(model.weight, before) and engine.skipped_nonfinite_grads == 1
    assert capsys.readouterr().err == "non-finite gradient norm at optimizer step 1: update skipped (1 in this run)\n"
    engine.backward(model(torch.ones(1, 4)).sum())
    assert engine.step() is True and not torch.equal(model.weight, before)  # the next finite step updates
    engine.save(tmp_path / "checkpoint", {})
    resumed = PlainEngine(torch.nn.Linear(4, 2), OptimConfig(lr=0.1, warmup_steps=0), 10, 1, torch.device("cpu"), False)
    resumed.load(tmp_path / "checkpoint")
    assert resumed.skipped_nonfinite_grads == 1  # the count travels with the checkpoint
