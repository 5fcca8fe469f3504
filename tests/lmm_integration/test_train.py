"""Stages A and B in one process (HF Trainer on CPU): what is trained, LoRA / QLoRA, saved folders, errors."""

import json

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from lmm_integration.lora import quantization_config
from lmm_integration.train import TrainOptions, load_model, main

FAST = ["--max-steps", "2", "--batch-size", "4", "--num-workers", "0", "--logging-steps", "1", "--warmup-ratio", "0"]


def _weights(folder):
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    return {
        "tower": model.model.vision_tower.encoder.layers[0].mlp.fc1.weight.detach().clone(),
        "projector": model.model.multi_modal_projector.linear_1.weight.detach().clone(),
        "lm": model.model.language_model.layers[0].mlp.up_proj.weight.detach().clone(),
        "head": model.lm_head.weight.detach().clone(),
    }


def _changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def stage_a(llava_dir, colour_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage_a")
    assert main(["--stage", "A", "--model", str(llava_dir), "--data", str(colour_data), "--output-dir", str(out), *FAST]) == 0
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
    assert main(["--stage", "B", "--model", str(stage_a / "final"), "--data", str(colour_data),
                 "--output-dir", str(tmp_path), "--gradient-checkpointing", *FAST]) == 0
    assert _changed(_weights(stage_a / "final"), _weights(tmp_path / "final")) == {"projector", "lm", "head"}


def test_unfreeze_vision_trains_the_tower_too(stage_a, colour_data, tmp_path):
    assert main(["--stage", "B", "--model", str(stage_a / "final"), "--data", str(colour_data),
                 "--output-dir", str(tmp_path), "--unfreeze-vision", "--bf16", *FAST]) == 0
    assert "tower" in _changed(_weights(stage_a / "final"), _weights(tmp_path / "final"))


def test_lora_merges_into_a_stock_folder(stage_a, colour_data, tmp_path):
    assert main(["--stage", "B", "--model", str(stage_a / "final"), "--data", str(colour_data), "--output-dir",
                 str(tmp_path), "--lora", "--lora-r", "4", "--lora-alpha", "8", "--lr", "1e-2", *FAST]) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    changed = _changed(_weights(stage_a / "final"), _weights(tmp_path / "final"))
    assert {"projector", "lm"} <= changed and "tower" not in changed and "head" not in changed


def test_qlora_4bit_quantises_the_lm_only_and_trains(stage_a, colour_data, tmp_path):
    options = TrainOptions(stage="B", model=str(stage_a / "final"), data=str(colour_data), output_dir=str(tmp_path), qlora=4)
    options.validate()
    model = load_model(options)
    kinds = {name.split(".")[1] if name.startswith("model.") else name: type(module).__name__
             for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    assert kinds["language_model"] == "Linear4bit"
    assert kinds["vision_tower"] == kinds["multi_modal_projector"] == kinds["lm_head"] == "Linear"
    assert main(["--stage", "B", "--model", str(stage_a / "final"), "--data", str(colour_data), "--output-dir",
                 str(tmp_path), "--qlora", "4", "--lora-r", "4", "--lora-alpha", "8", "--lr", "1e-2", *FAST]) == 0
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
    assert main(["--stage", "A", "--model", str(tmp_path / "missing"), *base]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["--stage", "A", "--model", str(llava_dir), "--data", str(tmp_path / "none.json"), *base[2:]]) == 2
    assert main(["--stage", "A", "--model", str(llava_dir), "--lora", *base]) == 2
    assert "stage B" in capsys.readouterr().err
    assert main(["--stage", "B", "--model", str(llava_dir), "--deepspeed", str(tmp_path / "ds.json"), *base]) == 2
    text_only = tmp_path / "text.json"
    text_only.write_text(json.dumps([{"id": "1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}]}]))
    assert main(["--stage", "A", "--model", str(llava_dir), "--data", str(text_only), *base[2:]]) == 2
    assert "no usable conversation" in capsys.readouterr().err


def test_defaults_follow_the_llava_recipe(llava_dir, colour_data, tmp_path):
    options = TrainOptions(stage="A", model=str(llava_dir), data=str(colour_data), output_dir=str(tmp_path))
    assert (options.learning_rate, options.projector_learning_rate) == (1e-3, 1e-3)
    options = TrainOptions(stage="B", model=str(llava_dir), data=str(colour_data), output_dir=str(tmp_path), qlora=4)
    options.validate()
    assert options.lora and (options.learning_rate, options.projector_learning_rate) == (2e-4, 2e-5)
    assert (options.lora_r, options.lora_alpha) == (128, 256)
