"""The command line: --help, one-line errors with exit code 2, recipe defaults, the default's options."""

import json

import pytest

from fgclip.train.cli import build_parser, config_from_args, main, validate


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings} has no help"


def test_unknown_option_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--nonsense"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--data", "x.jsonl"], "--init is required"),
    (["--init", "tiny"], "--data is required"),
    (["--lr", "1e-3"], "needs a training run"),
    (["--data", "x.jsonl", "--init", "tiny", "--batch_size", "0"], "--batch_size must be > 0"),
    (["--data", "x.jsonl", "--init", "tiny", "--max_bad_fraction", "2"], "--max_bad_fraction"),
    (["--data", "x.jsonl", "--init", "tiny", "--synthetic_images", "9"], "embedded default only"),
])
def test_bad_combinations_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


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
    assert main(["--data", data, "--init", "tiny", "--output_dir", str(tmp_path / "r"), "--resume", "latest"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    assert main(["--data", data, "--init", "tiny", "--deepspeed", str(tmp_path / "ds.json")]) == 2
    assert "DeepSpeed config not found" in capsys.readouterr().err


def test_recipe_defaults_depend_on_stage_and_init(tiny_init):
    stage2 = config_from_args(parse("--stage", "2", "--data", "d.jsonl", "--init", str(tiny_init)))
    assert (stage2.optim.lr, stage2.optim.weight_decay, stage2.optim.warmup_steps, stage2.batch_size) == (
        1e-6, 0.001, 200, 512)
    assert (stage2.loss_weights.region, stage2.loss_weights.hard) == (0.1, 0.5)
    stage1 = config_from_args(parse("--data", "d.jsonl", "--init", str(tiny_init), "--lr", "3e-5"))
    assert stage1.stage == 1 and stage1.optim.lr == 3e-5 and stage1.batch_size == 384
    assert (stage1.loss_weights.region, stage1.loss_weights.hard) == (0.0, 0.0)
    tiny = config_from_args(parse("--data", "d.jsonl", "--init", "tiny"))
    assert tiny.optim.lr == 1e-3 and tiny.batch_size == 32
    assert not tiny.force_deepspeed
    forced = config_from_args(parse("--data", "d.jsonl", "--init", "tiny", "--deepspeed"))
    assert forced.force_deepspeed and forced.deepspeed_config.endswith("scripts/zero2.json")


def test_default_experiment_takes_only_its_options():
    validate(parse("--output_dir", "x", "--seed", "3", "--synthetic_images", "50", "--max_steps", "5"))
