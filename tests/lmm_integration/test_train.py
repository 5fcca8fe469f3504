"""Stages A and B in one process (HF Trainer on CPU): what is trained, LoRA / QLoRA, saved folders, errors."""

import json

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from fgclip.cli import run
from fgclip.train.run_folder import LOCK_FILE
from lmm_integration.lora import quantization_config
from lmm_integration.train import TrainOptions, main
from lmm_integration.trainer import load_model
from tests.lmm_integration.conftest import FAST, stage_argv
from tests.run_lock import another_job_holding, files_of

SMALL_LORA = ["--lora-r", "4", "--lora-alpha", "8"]


def _weights(folder):
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    return {
        "tower": model.model.vision_tower.encoder.layers[0].mlp.fc1.weight.detach().clone(),
        "projector": model.model.multi_modal_projector.linear_1.weight.detach().clone(),
        "lm": model.model.language_model.layers[0].mlp.up_proj.weight.detach().clone(),
        "head": model.lm_head.weight.detach().clone(),
    }


def _all_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def stage_a(llava_dir, colour_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage_a")
    assert run(main, stage_argv("A", llava_dir, colour_data, out)) == 0
    return out


def test_stage_a_trains_only_the_projector_and_saves_a_stock_folder(stage_a, llava_dir):
    assert _changed(_weights(llava_dir), _weights(stage_a / "final")) == {"projector"}
    AutoProcessor.from_pretrained(stage_a / "final")
    metrics = [json.loads(line) for line in (stage_a / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["loss"] > 0 for m in metrics)
    assert json.loads((stage_a / "data_report.json").read_text())["kept"] == 8
    assert (stage_a / "final" / "lmm_build.json").is_file()
    assert json.loads((stage_a / "train_options.json").read_text())["stage"] == "A"


def test_stage_b_trains_projector_and_lm_with_the_tower_frozen(stage_a, colour_data, tmp_path):
    assert run(main, stage_argv("B", stage_a / "final", colour_data, tmp_path, "--gradient-checkpointing")) == 0
    assert _changed(_weights(stage_a / "final"), _weights(tmp_path / "final")) == {"projector", "lm", "head"}


def test_unfreeze_vision_trains_the_tower_too(stage_a, colour_data, tmp_path):
    assert run(main, stage_argv("B", stage_a / "final", colour_data, tmp_path, "--unfreeze-vision", "--bf16")) == 0
    assert "tower" in _changed(_weights(stage_a / "final"), _weights(tmp_path / "final"))


def test_lora_merges_into_a_stock_folder(stage_a, colour_data, tmp_path):
    lora = ("--lora", *SMALL_LORA, "--lr", "1e-2")
    assert run(main, stage_argv("B", stage_a / "final", colour_data, tmp_path, *lora)) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    changed = _changed(_weights(stage_a / "final"), _weights(tmp_path / "final"))
    assert {"projector", "lm"} <= changed and "tower" not in changed and "head" not in changed


def test_qlora_4bit_quantises_the_lm_only_and_trains(stage_a, colour_data, tmp_path):
    options = TrainOptions(
        stage="B", model=str(stage_a / "final"), data=str(colour_data), output_dir=str(tmp_path), qlora=4
    )
    options.validate()
    model = load_model(options)
    kinds = {
        name.split(".")[1] if name.startswith("model.") else name: type(module).__name__
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    assert kinds["language_model"] == "Linear4bit"
    assert kinds["vision_tower"] == kinds["multi_modal_projector"] == kinds["lm_head"] == "Linear"
    qlora = ("--qlora", "4", *SMALL_LORA, "--lr", "1e-2")
    assert run(main, stage_argv("B", stage_a / "final", colour_data, tmp_path, *qlora)) == 0
    final = LlavaForConditionalGeneration.from_pretrained(tmp_path / "final")
    assert getattr(final.config, "quantization_config", None) is None  # merged into full precision
    assert {"projector", "lm"} <= _changed(_weights(stage_a / "final"), _weights(tmp_path / "final"))


def test_qlora_8bit_config():
    config = quantization_config(8, torch.float32)
    assert config.load_in_8bit and "model.multi_modal_projector" in config.llm_int8_skip_modules
    with pytest.raises(ValueError, match="4 or 8"):
        quantization_config(2, torch.float32)


def test_bad_setups_exit_2_with_one_line(llava_dir, colour_data, tmp_path, capsys):
    base = ["--data", str(colour_data), "--output-dir", str(tmp_path / "run")]
    assert run(main, ["--stage", "A", "--model", str(tmp_path / "missing"), *base]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert run(main, ["--stage", "A", "--model", str(llava_dir), "--data", str(tmp_path / "none.json"), *base[2:]]) == 2
    assert run(main, ["--stage", "A", "--model", str(llava_dir), "--lora", *base]) == 2
    assert "stage B" in capsys.readouterr().err
    assert run(main, ["--stage", "B", "--model", str(llava_dir), "--deepspeed", str(tmp_path / "ds.json"), *base]) == 2
    text_only = tmp_path / "text.json"
    text_only.write_text(
        json.dumps([{"id": "1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}]}])
    )
    assert run(main, ["--stage", "A", "--model", str(llava_dir), "--data", str(text_only), *base[2:]]) == 2
    assert "no usable conversation" in capsys.readouterr().err


def test_defaults_follow_the_llava_recipe(llava_dir, colour_data, tmp_path):
    options = TrainOptions(stage="A", model=str(llava_dir), data=str(colour_data), output_dir=str(tmp_path))
    assert (options.learning_rate, options.projector_learning_rate) == (1e-3, 1e-3)
    options = TrainOptions(stage="B", model=str(llava_dir), data=str(colour_data), output_dir=str(tmp_path), qlora=4)
    options.validate()
    assert options.lora and (options.learning_rate, options.projector_learning_rate) == (2e-4, 2e-5)
    assert (options.lora_r, options.lora_alpha) == (128, 256)


# ---------------------------------------------------------------------- run folders, resume, pre-emption
def _stop_like_a_scheduler_at_first_log(metrics, stop_workers=True):
    """A thread that sends SIGTERM to this process and its DataLoader workers (as SLURM signals every process of
    a job) once the first step is logged."""
    import os
    import signal
    import threading
    import time

    import psutil

    def watch():
        while not (metrics.is_file() and metrics.read_text().strip()):
            time.sleep(0.02)
        workers = psutil.Process().children(recursive=True) if stop_workers else []
        for process in workers:
            process.send_signal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


QLORA_B = ["--stage", "B", "--qlora", "4", *SMALL_LORA]


@pytest.mark.parametrize("variant", [["--stage", "A"], QLORA_B], ids=["stage-a", "qlora"])
def test_sigterm_saves_a_checkpoint_and_resume_continues_it(variant, llava_dir, colour_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        *variant,
        "--model",
        str(llava_dir),
        "--data",
        str(colour_data),
        "--output-dir",
        str(out),
        "--max-steps",
        "6",
        "--batch-size",
        "2",
        "--num-workers",
        "1",
        "--logging-steps",
        "1",
        "--warmup-ratio",
        "0",
    ]
    watcher = _stop_like_a_scheduler_at_first_log(out / "metrics.jsonl")
    assert run(main, args) == 143
    watcher.join(timeout=5)
    printed = capsys.readouterr()
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and not (out / "final").exists()
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 1 <= stopped_at < 6
    assert "SIGTERM received" in printed.err
    assert f"stopped by SIGTERM after step {stopped_at}: checkpoint saved in {checkpoints[0]}" in printed.out
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {path.name for path in checkpoints[0].iterdir()}
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, stopped_at + 1))

    assert run(main, args + ["--resume"]) == 0
    assert f"resuming stage {variant[1]} from {checkpoints[0]}" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # continued after the checkpoint, nothing trained twice
    assert json.loads((out / "run_info.json").read_text())["steps"] == 6
    assert (out / "final" / "train_options.json").is_file()
    # the resumed stage ends with the weights of an uninterrupted one (CPU, fp32: bitwise)
    uninterrupted = tmp_path / "uninterrupted"
    where = args.index("--output-dir") + 1
    assert run(main, [*args[:where], str(uninterrupted), *args[where + 1 :]]) == 0
    resumed, reference = _all_weights(out / "final"), _all_weights(uninterrupted / "final")
    assert resumed.keys() == reference.keys() and all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_a_run_folder_is_never_mixed_with_another_run(stage_a, llava_dir, colour_data, capsys):
    same = stage_argv("A", llava_dir, colour_data, stage_a)
    assert run(main, same) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert run(main, [*same, "--resume"]) == 0  # finished with the same options: nothing to do
    assert "already finished with these options" in capsys.readouterr().out
    assert run(main, [*same, "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds another run (lr None -> 0.5)" in err and len(err.strip().splitlines()) == 1
    assert run(main, [*same, "--resume", "--overwrite-output-dir"]) == 2


def test_resume_on_a_fresh_folder_starts_and_says_so(llava_dir, colour_data, tmp_path, capsys):
    out = tmp_path / "fresh"
    assert run(main, stage_argv("A", llava_dir, colour_data, out, "--resume")) == 0
    assert "holds no run yet; starting from scratch" in capsys.readouterr().out
    assert (out / "final" / "config.json").is_file()


def test_overwrite_output_dir_starts_again_and_foreign_folders_are_refused(llava_dir, colour_data, tmp_path, capsys):
    out = tmp_path / "run"
    base = stage_argv("A", llava_dir, colour_data, out)
    assert run(main, base) == 0
    (out / "checkpoint-99").mkdir()  # a checkpoint of the earlier run
    assert run(main, [*base, "--overwrite-output-dir"]) == 0
    assert not (out / "checkpoint-99").exists()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"...")
    assert run(main, [*base[: -len(FAST) - 2], "--output-dir", str(foreign), *FAST]) == 2
    assert "holiday.jpg" in capsys.readouterr().err
    assert run(main, [*base[: -len(FAST) - 2], "--output-dir", str(llava_dir), *FAST]) == 2
    assert "is the input" in capsys.readouterr().err


def test_a_second_job_on_a_folder_in_use_stops_and_touches_nothing(stage_a, llava_dir, colour_data, capsys):
    """The same run lock as pretraining's: a job started on a folder another job trains in stops with one line,
    before it removes anything (even with --overwrite_output_dir)."""
    before = files_of(stage_a, but=LOCK_FILE)
    with another_job_holding(stage_a) as holder:
        capsys.readouterr()
        assert run(main, [*stage_argv("A", llava_dir, colour_data, stage_a), "--overwrite-output-dir"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another run (pid {holder.pid} on " in err[0]
        assert files_of(stage_a, but=LOCK_FILE) == before
