"""Building and tower-swapping LLaVA models with an FG-CLIP tower; loading them with stock transformers."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from fgclip import FGCLIPModel
from fgclip.cli import run
from fgclip.value_path import value_path_features
from lmm_integration.build import BuildOptions, build_llava, main, swap_vision_tower
from tests.lmm_integration.conftest import save_fgclip

STOCK_LOAD = """
import sys, torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
model = LlavaForConditionalGeneration.from_pretrained(sys.argv[1]).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1])
assert "lmm_integration" not in sys.modules and "fgclip" not in sys.modules
messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (32, 32), (200, 0, 0))},
                                         {"type": "text", "text": "Is there a red square ?"}]}]
inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
print(output.shape[1] - inputs["input_ids"].shape[1])
"""


def _inputs(processor, answer: str | None = None):
    image = Image.new("RGB", (32, 32), (0, 0, 200))
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "Is there a red square ?"}],
        }
    ]
    if answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return processor.apply_chat_template(
        messages, add_generation_prompt=answer is None, tokenize=True, return_dict=True, return_tensors="pt"
    )


def test_built_folder_loads_and_generates_with_plain_transformers(llava_dir):
    result = subprocess.run(
        [sys.executable, "-c", STOCK_LOAD, str(llava_dir)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 1


def test_config_and_tower_come_from_the_encoder(llava_dir, fgclip_dir):
    model = LlavaForConditionalGeneration.from_pretrained(llava_dir)
    processor = AutoProcessor.from_pretrained(llava_dir)
    config = model.config
    assert (config.vision_feature_layer, config.vision_feature_select_strategy, config.projector_hidden_act) == (
        -2,
        "default",
        "gelu",
    )
    assert (
        config.image_token_index == processor.tokenizer.convert_tokens_to_ids("<image>")
        and config.image_seq_length == 16
    )
    assert processor.num_additional_image_tokens == 1 and processor.patch_size == 8
    encoder = FGCLIPModel.from_pretrained(fgclip_dir)
    for name, tensor in encoder.vision_model.state_dict().items():
        torch.testing.assert_close(model.model.vision_tower.state_dict()[name], tensor)
    note = json.loads((llava_dir / "lmm_build.json").read_text())
    assert note["vision_kind"] == "fgclip" and note["projector"].startswith("new")
    assert config.fgclip_build["vision_features"] == "hidden"


def test_forward_backward_with_the_processor(llava_dir):
    model = LlavaForConditionalGeneration.from_pretrained(llava_dir)
    processor = AutoProcessor.from_pretrained(llava_dir)
    inputs = _inputs(processor, answer="No")
    assert (inputs["input_ids"] == model.config.image_token_index).sum() == 16
    output = model(**inputs, labels=inputs["input_ids"])
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert model.model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0
    image_features = model.model.get_image_features(inputs["pixel_values"]).pooler_output[0]
    with torch.no_grad():
        hidden = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
        torch.testing.assert_close(image_features, model.model.multi_modal_projector(hidden)[0])


def test_dense_features_build_loads_after_import_and_feeds_the_value_path(fgclip_dir, llm_dir, tmp_path):
    out = build_llava(fgclip_dir, llm_dir, tmp_path / "dense", BuildOptions(vision_features="dense", system_prompt=""))
    model = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.vision_feature_layer == -1 and model.config.vision_config.model_type == "fgclip_dense_vision"
    pixels = _inputs(processor)["pixel_values"]
    encoder = FGCLIPModel.from_pretrained(fgclip_dir)
    with torch.no_grad():
        trunk = encoder.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        expected = model.model.multi_modal_projector(value_path_features(encoder.vision_model, trunk)[:, 1:])
        features = model.model.get_image_features(pixels).pooler_output[0]
    torch.testing.assert_close(features, expected[0], rtol=1e-4, atol=1e-5)
    assert model.generate(**_inputs(processor), max_new_tokens=2, do_sample=False).shape[1] > 0


def test_swap_with_a_same_size_tower_keeps_lm_and_projector(llava_dir, tmp_path):
    other = save_fgclip(tmp_path / "other", seed=7)
    out = swap_vision_tower(llava_dir, other, tmp_path / "swapped")
    old = LlavaForConditionalGeneration.from_pretrained(llava_dir)
    new = LlavaForConditionalGeneration.from_pretrained(out)
    torch.testing.assert_close(
        new.model.multi_modal_projector.linear_1.weight, old.model.multi_modal_projector.linear_1.weight
    )
    torch.testing.assert_close(new.lm_head.weight, old.lm_head.weight)
    encoder = FGCLIPModel.from_pretrained(other)
    torch.testing.assert_close(
        new.model.vision_tower.embeddings.patch_embedding.weight, encoder.vision_model.embeddings.patch_embedding.weight
    )
    assert "kept" in json.loads((out / "lmm_build.json").read_text())["projector"]


def test_swap_with_another_hidden_size_reinitialises_the_projector_and_says_so(llava_dir, tmp_path):
    wider = save_fgclip(tmp_path / "wider", hidden_size=48, intermediate_size=96, image_size=48)
    with pytest.warns(UserWarning, match="re-initialised"):
        out = swap_vision_tower(llava_dir, wider, tmp_path / "swapped")
    note = json.loads((out / "lmm_build.json").read_text())
    assert "hidden size 32 -> 48" in note["projector"] and "patches per image 16 -> 36" in note["projector"]
    model = LlavaForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.model.multi_modal_projector.linear_1.in_features == 48 and model.config.image_seq_length == 36
    inputs = _inputs(processor, answer="Yes")
    assert torch.isfinite(model(**inputs, labels=inputs["input_ids"]).loss)


def test_swap_installs_a_trainable_template_when_the_checkpoint_has_none(llava_dir, fgclip_dir, tmp_path):
    processor = AutoProcessor.from_pretrained(llava_dir)
    processor.chat_template = "{% for m in messages %}{{ m['role'] }}{% endfor %}"  # no {% generation %} blocks
    plain = tmp_path / "plain"
    LlavaForConditionalGeneration.from_pretrained(llava_dir).save_pretrained(plain)
    processor.save_pretrained(plain)
    out = swap_vision_tower(plain, fgclip_dir, tmp_path / "swapped", BuildOptions(system_prompt=""))
    assert "generation" in AutoProcessor.from_pretrained(out).chat_template


def test_cli_builds_and_reports_bad_input_with_exit_code_2(fgclip_dir, llm_dir, tmp_path, capsys):
    assert (
        run(
            main,
            ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--out", str(tmp_path / "m"), "--system-prompt", ""],
        )
        == 0
    )
    assert "16 image tokens" in capsys.readouterr().out
    assert (
        run(main, ["--vision", str(fgclip_dir), "--llm", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "LLM folder not found" in capsys.readouterr().err
    assert run(main, ["--vision", str(tmp_path / "none"), "--llm", str(llm_dir), "--out", str(tmp_path / "x")]) == 2
    assert run(main, ["--vision", str(fgclip_dir), "--out", str(tmp_path / "x")]) == 2
    both = ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--out", str(tmp_path / "x")]
    assert run(main, [*both, "--from-llava", str(tmp_path / "m")]) == 2
    assert run(main, [*both, "--vision-features", "dense", "--vision-feature-layer", "-2"]) == 2
    assert run(main, ["--vision", str(fgclip_dir), "--from-llava", str(llm_dir), "--out", str(tmp_path / "x")]) == 2
    assert "not a LLaVA" in capsys.readouterr().err


# ---------------------------------------------------------------------- output folders and wrong folder kinds
def _one_line_error(capsys) -> str:
    """The one line a refused build prints (progress bars of loading that went before it aside)."""
    lines = [
        line
        for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
        if line.strip() and "it/s]" not in line
    ]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_out_may_not_be_an_input_and_inputs_stay_untouched(fgclip_dir, llm_dir, llava_dir, capsys):
    before = {folder: _snapshot(folder) for folder in (fgclip_dir, llm_dir, llava_dir)}
    assert run(main, ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--out", str(llm_dir)]) == 2
    assert f"--output_dir {llm_dir} is the input" in _one_line_error(capsys)
    assert run(main, ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--out", str(fgclip_dir)]) == 2
    _one_line_error(capsys)
    assert run(main, ["--vision", str(fgclip_dir), "--from-llava", str(llava_dir), "--out", str(llava_dir)]) == 2
    _one_line_error(capsys)
    assert {folder: _snapshot(folder) for folder in before} == before


def test_out_holding_another_model_needs_overwrite_and_an_earlier_build_is_rebuilt(
    fgclip_dir, llm_dir, tmp_path, capsys
):
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(llm_dir, other)
    args = ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--system-prompt", ""]
    assert run(main, [*args, "--out", str(other)]) == 2
    assert "already holds files of another model or run" in _one_line_error(capsys)
    assert not (other / "lmm_build.json").exists()
    assert run(main, [*args, "--out", str(other), "--overwrite"]) == 0
    assert json.loads((other / "lmm_build.json").read_text())["complete"]
    assert run(main, [*args, "--out", str(other)]) == 0  # its own earlier build: written again without a flag
    (tmp_path / "file").write_text("x")
    assert run(main, [*args, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in _one_line_error(capsys)


def test_keep_existing_keeps_the_same_build_and_refuses_another(fgclip_dir, llm_dir, tmp_path, capsys):
    args = ["--vision", str(fgclip_dir), "--llm", str(llm_dir), "--out", str(tmp_path / "m"), "--system-prompt", ""]
    assert run(main, [*args, "--keep-existing"]) == 0
    weights = (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert run(main, [*args, "--keep-existing"]) == 0
    assert "keeping the LLaVA model already built" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns == weights
    assert run(main, [*args, "--keep-existing", "--seed", "3"]) == 2
    assert "holds a build of other inputs or options (seed 0 -> 3)" in _one_line_error(capsys)


def _clip_folder(folder):
    """A tiny copy of openai/clip-vit-base-patch16 as downloaded (model_type 'clip')."""
    from tests.hub_copies.clip import make_hub_copy

    return make_hub_copy("openai/clip-vit-base-patch16", folder)


def test_wrong_folder_kinds_are_one_line_errors(fgclip_dir, llm_dir, llava_dir, tmp_path, capsys):
    import shutil

    out = ["--out", str(tmp_path / "out")]
    clip = _clip_folder(tmp_path / "clip")
    for vision_encoder in (clip, fgclip_dir):
        assert run(main, ["--vision", str(fgclip_dir), "--llm", str(vision_encoder), *out]) == 2
        assert "holds a vision encoder" in _one_line_error(capsys)
    assert run(main, ["--vision", str(fgclip_dir), "--llm", str(llava_dir), *out]) == 2
    assert f"use --from_llava {llava_dir}" in _one_line_error(capsys)
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(llm_dir / "config.json", no_tokenizer)
    shutil.copy(llm_dir / "model.safetensors", no_tokenizer)
    assert run(main, ["--vision", str(fgclip_dir), "--llm", str(no_tokenizer), *out]) == 2
    assert "has no tokenizer files" in _one_line_error(capsys)
    no_weights = tmp_path / "no-weights"
    shutil.copytree(llm_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    assert run(main, ["--vision", str(fgclip_dir), "--llm", str(no_weights), *out]) == 2
    assert "cannot load its weights" in _one_line_error(capsys)
    assert run(main, ["--vision", str(llm_dir), "--llm", str(llm_dir), *out]) == 2
    assert "a 'llama' model" in _one_line_error(capsys)
    assert run(main, ["--vision", str(llava_dir), "--llm", str(llm_dir), *out]) == 2
    assert "is a LLaVA folder" in _one_line_error(capsys)
    truncated = tmp_path / "truncated"
    shutil.copytree(fgclip_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert run(main, ["--vision", str(truncated), "--llm", str(llm_dir), *out]) == 2
    _one_line_error(capsys)
    assert run(main, ["--vision", str(fgclip_dir), "--from-llava", str(llm_dir), *out]) == 2
    assert "is not a LLaVA" in _one_line_error(capsys)
