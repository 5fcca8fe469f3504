"""The training loop: loss goes down, files a user gets, bad-record accounting, non-finite losses."""

import json
from dataclasses import replace

import pytest
import torch

from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.data.dataset import DataError
from fgclip.model.conversion import save_with_processors
from fgclip.train.loop import TrainingError, train
from tests.train.conftest import read_metrics, small_config


def test_stage_runs_write_metrics_checkpoint_and_a_loadable_final(tmp_path, synthetic_set, tiny_init):
    config = small_config(synthetic_set / "train.jsonl", tiny_init, tmp_path / "s1", max_steps=12, log_every=3,
                          report_to="tensorboard")
    result = train(config)
    metrics = read_metrics(tmp_path / "s1")
    assert [m["step"] for m in metrics] == [3, 6, 9, 12]
    assert {"loss", "loss_long", "loss_short", "lr", "samples_per_s", "bad_records", "nonfinite_steps"} <= set(metrics[0])
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert list((tmp_path / "s1" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "s1" / "checkpoints" / "latest").read_text().strip() == "step-00000012"
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["engine"] == "plain" and summary["bad_records"] == 0
    model = FGCLIPModel.from_pretrained(result.final_dir)
    # stage 1 does not train the regional / hard temperatures; they leave it equal to the global one
    assert model.logit_scale_region.item() == model.logit_scale_hard.item() == model.logit_scale.item()

    stage2 = train(small_config(synthetic_set / "train.jsonl", result.final_dir, tmp_path / "s2", stage=2,
                                max_steps=6, log_every=2))
    metrics2 = read_metrics(tmp_path / "s2")
    assert {"loss_region", "loss_hard"} <= set(metrics2[0])
    after = FGCLIPModel.from_pretrained(stage2.final_dir)
    assert after.logit_scale_hard.item() != model.logit_scale_hard.item()  # trained in stage 2


def test_too_many_bad_records_stop_the_run_naming_examples(tmp_path, synthetic_set, tiny_init):
    lines = (synthetic_set / "train.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace("images/", "images/missing_")
    lines[5] = "{not json"
    bad_file = synthetic_set / "with_bad.jsonl"
    bad_file.write_text("\n".join(lines) + "\n")
    config = small_config(bad_file, tiny_init, tmp_path / "run", max_steps=12)
    with pytest.raises(DataError, match=r"records are bad .*> --max_bad_fraction 1.0%.*missing_"):
        train(config)
    # a looser limit lets it run; the skips are counted in metrics and summary
    result = train(replace(config, output_dir=str(tmp_path / "loose"),
                           data=replace(config.data, max_bad_fraction=0.2)))
    assert result.bad_records["bad_records"] >= 2
    assert read_metrics(tmp_path / "loose")[-1]["bad_records"] == result.bad_records["bad_records"]


def poisoned_init(tmp_path, word):
    """A tiny model whose token embedding of `word` is NaN: every text with the word gives a NaN loss."""
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config())
    ids = FGCLIPTokenizer()(word)["input_ids"][0, 1:-1]
    with torch.no_grad():
        model.text_model.embeddings.token_embedding.weight[ids] = float("nan")
    save_with_processors(model, tmp_path / "poisoned")
    return tmp_path / "poisoned"


def test_nonfinite_losses_are_skipped_counted_and_stop_when_repeated(tmp_path, synthetic_set):
    init = poisoned_init(tmp_path, "purple")
    records = [json.loads(line) for line in (synthetic_set / "train.jsonl").read_text().splitlines()]
    with_purple = sum("purple" in r["long_caption"] or "purple" in r["short_caption"] for r in records)
    assert 0 < with_purple < len(records)
    config = small_config(synthetic_set / "train.jsonl", init, tmp_path / "run", max_steps=8, log_every=1, batch_size=2)
    result = train(config)
    assert result.nonfinite_steps > 0 and result.steps == 8
    assert read_metrics(tmp_path / "run")[-1]["nonfinite_steps"] == result.nonfinite_steps
    trained = FGCLIPModel.from_pretrained(result.final_dir)
    assert torch.isfinite(trained.vision_model.embeddings.patch_embedding.weight).all()  # no NaN got in

    everywhere = poisoned_init(tmp_path / "b", "picture")  # every long caption starts "A picture of"
    with pytest.raises(TrainingError, match="3 non-finite losses in a row"):
        train(replace(config, model=replace(config.model, init=str(everywhere)), output_dir=str(tmp_path / "nan"),
                      max_nonfinite_steps=3))


def test_gradient_checkpointing_gives_the_same_training(tmp_path, synthetic_set, tiny_init):
    from safetensors.torch import load_file

    config = small_config(synthetic_set / "train.jsonl", tiny_init, tmp_path / "plain", stage=2, max_steps=2)
    train(config)
    checkpointed = replace(config, output_dir=str(tmp_path / "ckpt"),
                           model=replace(config.model, gradient_checkpointing=True))
    train(checkpointed)
    a = load_file(str(tmp_path / "plain" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_switches_the_layers_on(tiny_init):
    from fgclip.train.config import ModelInit
    from fgclip.train.model_init import build_model

    model = build_model(ModelInit(init=str(tiny_init), gradient_checkpointing=True), stage=2, seed=0)
    layers = list(model.vision_model.encoder.layers) + list(model.text_model.encoder.layers)
    assert all(layer.gradient_checkpointing for layer in layers)
    assert not build_model(ModelInit(init=str(tiny_init)), stage=2, seed=0).vision_model.encoder.layers[0].gradient_checkpointing
