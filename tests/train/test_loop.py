"""The training loop: loss goes down, files a user gets, bad-record accounting, non-finite losses."""

import json
from dataclasses import replace

import pytest
import torch

from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.folders import save_with_processors
from fgclip.train.cli import main
from fgclip.train.config import DataConfig
from fgclip.train.loop import TrainingError, train
from tests.train.conftest import read_metrics, records_file, small_config


def test_stage_runs_write_metrics_checkpoint_and_a_loadable_final(tmp_path, synthetic_set, tiny_init):
    config = small_config(
        synthetic_set / "train.jsonl", tiny_init, tmp_path / "s1", max_steps=12, log_every=3, report_to="tensorboard"
    )
    result = train(config)
    metrics = read_metrics(tmp_path / "s1")
    assert [m["step"] for m in metrics] == [3, 6, 9, 12]
    assert {"loss", "loss_long", "loss_short", "lr", "samples_per_s", "bad_records", "nonfinite_steps"} <= set(
        metrics[0]
    )
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert list((tmp_path / "s1" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "s1" / "checkpoints" / "latest").read_text().strip() == "step-00000012"
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["engine"] == "plain" and summary["bad_records"] == 0
    assert summary["skipped_nonfinite_updates"] == 0
    model = FGCLIPModel.from_pretrained(result.final_dir)
    # stage 1 does not train the regional / hard temperatures; they leave it equal to the global one
    assert model.logit_scale_region.item() == model.logit_scale_hard.item() == model.logit_scale.item()

    stage2 = train(
        small_config(
            synthetic_set / "train.jsonl", result.final_dir, tmp_path / "s2", stage=2, max_steps=6, log_every=2
        )
    )
    metrics2 = read_metrics(tmp_path / "s2")
    assert {"loss_region", "loss_hard"} <= set(metrics2[0])
    after = FGCLIPModel.from_pretrained(stage2.final_dir)
    assert after.logit_scale_hard.item() != model.logit_scale_hard.item()  # trained in stage 2


@pytest.mark.slow
def test_three_bad_records_in_400_complete_a_one_percent_run(tmp_path, synthetic_set, tiny_init):
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 400, bad=3)
    result = train(small_config(data, tiny_init, tmp_path / "run", max_steps=None, batch_size=100, log_every=2))
    assert result.steps == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert (summary["bad_records"], summary["seen_records"]) == (3, 400)
    assert summary["bad_by_reason"] == {"missing_image": 3} and len(set(summary["bad_examples"])) == 3
    assert read_metrics(tmp_path / "run")[-1]["bad_records"] == 3


def test_records_are_counted_once_over_epochs_with_truncations_and_duplicates(tmp_path, synthetic_set, tiny_init):
    def change(record, i):
        if i == 3:
            record["long_caption"] = "a very long caption " * 80  # 320 words: more than 248 tokens
        if i == 19:  # the same record as line 19
            record.update(
                image=str(synthetic_set / "images" / "000017.png"),
                short_caption=duplicate_of["short_caption"],
                long_caption=duplicate_of["long_caption"],
                regions=duplicate_of["regions"],
                split="train",
            )

    plain = records_file(synthetic_set, tmp_path / "plain.jsonl", 20)
    duplicate_of = json.loads(plain.read_text().splitlines()[17])
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 20, bad=1, change=change)
    assert data.read_text().splitlines()[17] == data.read_text().splitlines()[19]
    config = small_config(data, tiny_init, tmp_path / "run", max_steps=None, epochs=3, batch_size=10, log_every=2)
    train(replace(config, data=DataConfig(paths=[str(data)], num_workers=0, max_bad_fraction=0.1)))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["bad_records"], summary["seen_records"]) == (1, 20)  # not once per epoch
    assert summary["bad_examples"] == [f"{data}:1: image not found: {synthetic_set / 'images' / 'missing_0.png'}"]
    assert (summary["long_captions_truncated"], summary["long_captions_encoded"]) == (3, 60)  # 1 caption, 3 epochs
    assert summary["duplicate_records"] == 1


@pytest.mark.slow
def test_forty_bad_records_in_400_stop_after_saving_with_one_line(tmp_path, synthetic_set, tiny_init, capsys):
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 400, bad=40)
    # the first record also lacks its short caption: one record with two faults is one bad record
    data.write_text(data.read_text().replace('"short_caption"', '"short_caption_"', 1))
    out = tmp_path / "run"
    code = main(
        [
            "--data",
            str(data),
            "--init",
            str(tiny_init),
            "--output_dir",
            str(out),
            "--epochs",
            "3",
            "--batch_size",
            "100",
            "--no_progress",
            "--seed",
            "11",
        ]
    )
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1
    assert err[0].startswith(
        "error: 40 of 400 records are bad (10.0%): missing_image 39, missing_caption 1, more than "
        "--max_bad_fraction 1.0% after a whole pass over the data; e.g. "
    )
    assert "image not found" in err[0] and "checkpoint of step 4 saved in" in err[0]
    assert (out / "checkpoints" / "step-00000004" / "trainer_state.json").is_file()
    assert not (out / "final").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"].startswith("stopped") and summary["bad_records"] == 40


def without_regions(record, i):
    record["regions"] = []


def without_negatives(record, i):
    for region in record["regions"]:
        region.pop("hard_negatives")


def test_stage2_without_region_data_stops_with_one_line(tmp_path, synthetic_set, tiny_init, capsys):
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 20, change=without_regions)
    assert (
        main(
            [
                "--stage",
                "2",
                "--data",
                str(data),
                "--init",
                str(tiny_init),
                "--output_dir",
                str(tmp_path / "r"),
                "--no_progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        (
            "error: stage 2 needs region data, but none of the 20 records read from --data has regions "
            "(regions / FineHARD bbox_info); train stage 1 on it, or give records with boxes"
        )
    ]


def test_stage2_without_hard_negatives_logs_the_hard_term_as_absent(tmp_path, synthetic_set, tiny_init, capsys):
    data = records_file(synthetic_set, tmp_path / "d.jsonl", 20, change=without_negatives)
    train(small_config(data, tiny_init, tmp_path / "r", stage=2, max_steps=2))
    metrics = read_metrics(tmp_path / "r")
    assert all(m["loss_hard"] is None for m in metrics)  # absent, not a perfect 0.0
    assert all(m["loss_region"] > 0 for m in metrics)
    assert capsys.readouterr().out.count("loss_hard is absent") == 1


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
        train(
            replace(
                config,
                model=replace(config.model, init=str(everywhere)),
                output_dir=str(tmp_path / "nan"),
                max_nonfinite_steps=3,
            )
        )


def test_gradient_checkpointing_gives_the_same_training(tmp_path, synthetic_set, tiny_init):
    from safetensors.torch import load_file

    config = small_config(synthetic_set / "train.jsonl", tiny_init, tmp_path / "plain", stage=2, max_steps=2)
    train(config)
    checkpointed = replace(
        config, output_dir=str(tmp_path / "ckpt"), model=replace(config.model, gradient_checkpointing=True)
    )
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
    assert (
        not build_model(ModelInit(init=str(tiny_init)), stage=2, seed=0)
        .vision_model.encoder.layers[0]
        .gradient_checkpointing
    )


def test_official_finehard_with_an_image_missing_under_images_is_a_counted_skip(tmp_path, tiny_init):
    from tests.data.conftest import official_finehard

    official_finehard(tmp_path, missing_image=True)
    out = tmp_path / "run"
    assert (
        main(
            [
                "--stage",
                "2",
                "--init",
                str(tiny_init),
                "--data",
                str(tmp_path / "jsonfiles"),
                "--images",
                str(tmp_path / "grit-12m"),
                "--output_dir",
                str(out),
                "--batch_size",
                "3",
                "--max_bad_fraction",
                "0.2",
                "--no_progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seen_records"], summary["bad_by_reason"]) == (6, {"missing_image": 1})
    assert "coyo_image_1/00002/001000002.jpg" in summary["bad_examples"][0]
