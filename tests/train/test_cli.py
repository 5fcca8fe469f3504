"""The command line: --help, one-line errors with exit code 2, recipe defaults, the default's options."""

import json
import shutil
import subprocess
import sys

import pytest

from fgclip.train.cli import build_parser, config_from_args, main, validate
from tests.train.conftest import run_argv


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        if action.option_strings:  # each under its one spelling; kebab forms and old names are hidden
            assert action.option_strings[0] in text
        assert action.help, f"{action.option_strings} has no help"


def test_unknown_option_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--nonsense"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "x.jsonl"], "--init is required"),
        (["--init", "tiny"], "--data is required"),
        (["--lr", "1e-3"], "needs a training run"),
        (["--data", "x.jsonl", "--init", "tiny", "--synthetic_images", "9"], "embedded default only"),
    ],
)
def test_bad_combinations_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "x.jsonl", "--init", "tiny", "--batch_size", "0"], "--batch_size: must be a positive integer"),
        (["--data", "x.jsonl", "--init", "tiny", "--max_bad_fraction", "2"], "--max_bad_fraction: must be in [0, 1]"),
        (["--data", "x.jsonl", "--init", "tiny", "--min_lr_ratio", "1.5"], "--min_lr_ratio: must be in [0, 1]"),
        (["--data", "x.jsonl", "--init", "tiny", "--weight_decay", "-1"], "--weight_decay: must be >= 0"),
        (["--data", "x.jsonl", "--init", "tiny", "--hard_weight", "-0.5"], "--hard_weight: must be >= 0"),
    ],
)
def test_bad_values_are_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_help_answers_before_torch_loads():
    code = (
        "import sys\nfrom fgclip.train.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as stop:\n"
        "    assert stop.code == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules]\nassert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_old_and_kebab_spellings_still_work():
    old = parse(
        "--data",
        "d.jsonl",
        "--init",
        "tiny",
        "--out",
        "o",
        "--no-progress",
        "--batch-size",
        "8",
        "--short-caption-prefix",
        "",
    )
    assert (old.output_dir, old.progress, old.batch_size, old.short_caption_prefix) == ("o", False, 8, "")
    config = config_from_args(old)
    assert config.output_dir == "o" and not config.progress and config.data.finehard_short_prefix == ""
    assert config.sources["batch_size"] == "--batch_size"


def test_values_not_given_come_from_the_dataclasses_and_the_recipe():
    config = config_from_args(parse("--data", "d.jsonl", "--init", "tiny", "--stage", "2"))
    assert (config.output_dir, config.epochs, config.data.max_regions, config.loss.region) == ("runs/stage2", 1, 4, 0.1)
    assert config.sources["grad_clip"] == "default" and config.sources["max_steps"] == "not set"
    assert config.progress and not config.overwrite_output_dir and config.deepspeed_config is None


def test_missing_paths_and_incompatible_checkpoints_exit_2(tmp_path, synthetic_set, capsys):
    data = str(synthetic_set / "train.jsonl")
    assert main(["--data", str(tmp_path / "missing.jsonl"), "--init", "tiny"]) == 2
    assert "data path not found" in capsys.readouterr().err
    assert main(["--data", data, "--init", str(tmp_path / "no_model")]) == 2
    assert "no such folder" in capsys.readouterr().err
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert main(["--data", data, "--init", str(other)]) == 2
    assert "'bert' model" in capsys.readouterr().err
    assert (
        main(["--data", data, "--init", "tiny", "--output_dir", str(tmp_path / "r"), "--resume", str(tmp_path / "r")])
        == 2
    )  # an explicit checkpoint path must hold one
    assert "no checkpoint found" in capsys.readouterr().err
    assert main(["--data", data, "--init", "tiny", "--deepspeed", str(tmp_path / "ds.json")]) == 2
    assert "DeepSpeed config not found" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["--data", data, "--init", "tiny", "--output_dir", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0]
    assert main(["--data", data, "--init", "tiny", "--images", str(tmp_path / "nowhere")]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["--data", data, "--init", "tiny", "--resume", "latest", "--overwrite_output_dir"]) == 2
    assert "contradict" in capsys.readouterr().err


def recipe_values(config) -> tuple:
    """What a recipe sets: (lr, weight decay, warmup steps, batch size)."""
    return config.optim.lr, config.optim.weight_decay, config.optim.warmup_steps, config.batch_size


def test_recipe_comes_from_what_the_model_is(tiny_init, tmp_path):
    # a small model folder (no recipe recorded): the tiny recipe, whatever the stage
    small = config_from_args(parse("--stage", "2", "--data", "d.jsonl", "--init", str(tiny_init)))
    assert recipe_values(small) == (1e-3, 0.01, 20, 32)
    assert (
        small.recipe == "tiny" and small.sources["lr"] == "recipe tiny" and "vision width 32" in small.sources["recipe"]
    )
    assert (small.loss_weights.region, small.loss_weights.hard) == (0.1, 0.5)
    # a folder this trainer wrote records its recipe, which wins over the size rule
    recorded = tmp_path / "recorded"
    shutil.copytree(tiny_init, recorded)
    (recorded / "training_recipe.json").write_text(json.dumps({"recipe": "published", "stage": 1}))
    stage2 = config_from_args(parse("--stage", "2", "--data", "d.jsonl", "--init", str(recorded)))
    assert recipe_values(stage2) == (1e-6, 0.001, 200, 512)
    assert "training_recipe.json" in stage2.sources["recipe"]
    # a CLIP-size folder: the published recipe; flags win. The choice reads only config.json, so the folder
    # holds the towers' keys of the Hub's openai/clip-vit-base-patch16 config (no 600 MB of weights)
    clip = tmp_path / "clip-vit-base-patch16"
    clip.mkdir()
    (clip / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["CLIPModel"],
                "model_type": "clip",
                "projection_dim": 512,
                "logit_scale_init_value": 2.6592,
                "text_config": {
                    "hidden_size": 512,
                    "intermediate_size": 2048,
                    "num_attention_heads": 8,
                    "num_hidden_layers": 12,
                    "max_position_embeddings": 77,
                    "bos_token_id": 0,
                    "eos_token_id": 2,
                    "pad_token_id": 1,
                    "hidden_act": "quick_gelu",
                },
                "vision_config": {
                    "hidden_size": 768,
                    "intermediate_size": 3072,
                    "num_attention_heads": 12,
                    "num_hidden_layers": 12,
                    "image_size": 224,
                    "patch_size": 16,
                    "hidden_act": "quick_gelu",
                },
            }
        )
    )
    stage1 = config_from_args(parse("--data", "d.jsonl", "--init", str(clip), "--lr", "3e-5"))
    assert stage1.stage == 1 and stage1.optim.lr == 3e-5 and stage1.batch_size == 384 and stage1.recipe == "published"
    assert stage1.sources["lr"] == "--lr" and stage1.sources["batch_size"] == "recipe published"
    assert (stage1.loss_weights.region, stage1.loss_weights.hard) == (0.0, 0.0)
    tiny = config_from_args(parse("--data", "d.jsonl", "--init", "tiny"))
    assert tiny.optim.lr == 1e-3 and tiny.batch_size == 32 and tiny.sources["recipe"] == "--init tiny"
    assert not tiny.force_deepspeed
    forced = config_from_args(parse("--data", "d.jsonl", "--init", "tiny", "--deepspeed"))
    assert forced.force_deepspeed and forced.deepspeed_config.endswith("fgclip/train/zero2.json")


def test_default_experiment_takes_only_its_options():
    validate(parse("--output_dir", "x", "--seed", "3", "--synthetic_images", "50", "--max_steps", "5"))


def test_resume_latest_on_a_fresh_folder_starts_from_scratch_and_says_so(tmp_path, synthetic_set, capsys):
    out = tmp_path / "fresh"
    extra = ("--max_steps", "1", "--resume", "latest", "--short_text_groups", "4")
    assert main(run_argv(synthetic_set / "train.jsonl", "tiny", out, *extra)) == 0
    printed = capsys.readouterr().out
    assert "--resume latest: no checkpoint in" in printed and "starting from scratch" in printed
    assert (out / "final" / "model.safetensors").is_file()
    assert json.loads((out / "final" / "training_recipe.json").read_text())["recipe"] == "tiny"
    assert json.loads((out / "final" / "config.json").read_text())["short_text_groups"] == 4  # the speed lever, saved
