"""Checkpoints the Hugging Face way: round trip, stock CLIP init, official import, vision-tower export."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, CLIPModel, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.cli import run
from fgclip.convert import main as convert_main
from fgclip.errors import UserError
from fgclip.hf_files import CLIP_SPECIAL_TOKEN_IDS
from fgclip.model.conversion import OFFICIAL_KEY_MAP, converted_checkpoint, derived_weights, detect_checkpoint_kind
from fgclip.model.positions import stretch_position_table
from fgclip.model.vision_tower import standalone_vision_tower
from tests.conftest import tiny_config
from tests.hub_copies.clip import HUB_FOLDERS, OFFICIAL_FGCLIP_IDS, STOCK_CLIP_IDS
from tests.transformers_437 import run_437


def _trained_looking(model: FGCLIPModel) -> FGCLIPModel:
    """Give the FG-CLIP-only weights values no rule would re-derive (as after stage 2)."""
    with torch.no_grad():
        model.long_text_positions.residual.add_(torch.randn_like(model.long_text_positions.residual))
        model.long_text_projection.weight.add_(1.0)
        model.logit_scale_region.fill_(3.3)
        model.logit_scale_hard.fill_(4.4)
    return model


def test_save_load_round_trip_is_bitwise_equal(tiny_model, tmp_path):
    _trained_looking(tiny_model).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = FGCLIPModel.from_pretrained(tmp_path)
    original, reloaded = tiny_model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    for name in original:
        assert torch.equal(original[name], reloaded[name]), name


def test_auto_classes_load_without_remote_code(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "fgclip"
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "FGCLIPConfig"
    assert isinstance(AutoModel.from_pretrained(tmp_path), FGCLIPModel)


@pytest.mark.parametrize("repo_id", STOCK_CLIP_IDS)
def test_stock_clip_folder_loads_with_long_parts_created(hub_copy, repo_id):
    folder = hub_copy(repo_id)
    assert detect_checkpoint_kind(folder) == "clip"
    clip = CLIPModel.from_pretrained(folder).eval()
    model = FGCLIPModel.from_pretrained(folder).eval()
    assert model.image_size == HUB_FOLDERS[repo_id].image_size
    assert model.config.text_config.hidden_act == HUB_FOLDERS[repo_id].hidden_act
    short_table = clip.text_model.embeddings.position_embedding.weight
    positions = model.long_text_positions
    assert torch.equal(positions.original, stretch_position_table(short_table.detach()))
    assert torch.equal(positions.residual, positions.original)
    assert torch.equal(model.long_text_projection.weight, clip.text_projection.weight)
    assert model.logit_scale_region.item() == model.logit_scale_hard.item() == clip.logit_scale.item()
    size = model.image_size
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_image(pixels, normalize=False),
            clip.get_image_features(pixels).pooler_output,
            rtol=0,
            atol=1e-5,
        )
        grid = size // HUB_FOLDERS[repo_id].patch_size
        assert model.encode_dense(pixels).shape == (2, grid, grid, model.config.projection_dim)


@pytest.mark.parametrize("repo_id", OFFICIAL_FGCLIP_IDS)
def test_official_release_imports_its_trained_weights_as_they_are(hub_copy, repo_id, tmp_path):
    release = hub_copy(repo_id)
    assert detect_checkpoint_kind(release) == "official-fgclip"
    official = load_file(str(release / "model.safetensors"))
    imported = FGCLIPModel.from_pretrained(release)
    ours = imported.state_dict()
    for official_name, tensor in official.items():
        assert torch.equal(ours[OFFICIAL_KEY_MAP.get(official_name, official_name)], tensor), official_name
    assert imported.image_size == HUB_FOLDERS[repo_id].image_size
    assert imported.config.special_token_ids == CLIP_SPECIAL_TOKEN_IDS  # not the file's legacy 0 / 2 / 1
    # The CLI writes it in this project's format, which then loads as an FG-CLIP folder, bit for bit.
    assert run(convert_main, ["from-official", str(release), str(tmp_path / "ours")]) == 0
    assert detect_checkpoint_kind(tmp_path / "ours") == "fgclip"
    reloaded = FGCLIPModel.from_pretrained(tmp_path / "ours").state_dict()
    assert all(torch.equal(reloaded[name], tensor) for name, tensor in ours.items())
    assert (tmp_path / "ours" / "tokenizer_config.json").is_file()
    assert (tmp_path / "ours" / "preprocessor_config.json").is_file()


def test_official_long_text_uses_the_trained_tables(hub_copy):
    """Long text runs on `_ori` below slot 20 and `_res` from slot 20, through `text_filip_projection`."""
    release = hub_copy("qihoo360/fg-clip-base")
    official = load_file(str(release / "model.safetensors"))
    model = FGCLIPModel.from_pretrained(release).eval()
    table = model.long_text_positions(100)
    assert torch.equal(table[:20], official["text_model.embeddings.position_embedding_ori.weight"][:20])
    assert torch.equal(table[20:], official["text_model.embeddings.position_embedding_res.weight"][20:100])
    batch = FGCLIPTokenizer.from_pretrained(release)([" ".join(["word"] * 60)], long=True)
    with torch.no_grad():
        hidden, _ = model._text_hidden(batch["input_ids"], batch["attention_mask"], long=True)
        pooled = hidden[0, int(batch["attention_mask"].sum()) - 1]
        expected = pooled @ official["text_filip_projection.weight"].T
        torch.testing.assert_close(model.encode_text(**batch, long=True, normalize=False)[0], expected)


def test_folder_of_another_model_type_is_a_clear_error(tmp_path, capsys):
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"config.json describes a 'llama' model, which FG-CLIP does not read"):
        FGCLIPModel.from_pretrained(tmp_path)
    capsys.readouterr()
    assert run(convert_main, ["export-vision", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "llama" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_from_clip_on_every_stock_folder(hub_copy, tmp_path):
    for repo_id in STOCK_CLIP_IDS:
        out = tmp_path / repo_id.replace("/", "--")
        assert run(convert_main, ["from-clip", str(hub_copy(repo_id)), str(out)]) == 0
        saved = json.loads((out / "config.json").read_text())
        assert saved["model_type"] == "fgclip"
        pad = 0 if HUB_FOLDERS[repo_id].pad_token == "!" else 49407
        text = saved["text_config"]
        assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (49406, 49407, pad)
        assert isinstance(FGCLIPModel.from_pretrained(out), FGCLIPModel)


FRESH_LOAD = textwrap.dedent("""
    import sys, torch
    from transformers import CLIPImageProcessor, CLIPVisionModel
    folder, pixels_file, out_file = sys.argv[1:4]
    model = CLIPVisionModel.from_pretrained(folder).eval()
    processor = CLIPImageProcessor.from_pretrained(folder)
    assert processor.crop_size["height"] == 32 and processor.image_mean
    assert "fgclip" not in sys.modules, "the export must load without the project"
    with torch.no_grad():
        out = model(torch.load(pixels_file), output_hidden_states=True)
    torch.save({"last": out.last_hidden_state, "penultimate": out.hidden_states[-2]}, out_file)
""")


def _export_and_expected(tiny_model, tmp_path):
    folder = tiny_model.export_vision_tower(tmp_path / "tower")
    pixels = torch.randn(2, 3, 32, 32)
    torch.save(pixels, tmp_path / "pixels.pt")
    with torch.no_grad():
        expected = tiny_model.vision_model(pixels, output_hidden_states=True)
    return folder, expected


def test_exported_tower_loads_in_stock_transformers_without_fgclip(tiny_model, tmp_path):
    folder, expected = _export_and_expected(_trained_looking(tiny_model), tmp_path)
    names = set(load_file(str(folder / "model.safetensors")))
    assert names and all(name.startswith("vision_model.") for name in names)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(folder), str(tmp_path / "pixels.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(got["last"], expected.last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["penultimate"], expected.hidden_states[-2], rtol=0, atol=1e-6)


def test_the_standalone_tower_is_what_the_export_writes(tiny_model, tmp_path):
    """One route: the in-memory tower and the folder hold the same model, apart from the dual encoder."""
    tower = standalone_vision_tower(tiny_model.vision_model)
    assert type(tower) is CLIPVisionModel and tower.config.architectures == ["CLIPVisionModel"]
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(tower.parameters(), tiny_model.vision_model.parameters()))
    loaded = CLIPVisionModel.from_pretrained(tiny_model.export_vision_tower(tmp_path / "tower")).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tower.eval()(pixels).pooler_output, loaded(pixels).pooler_output, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_exported_tower_loads_every_weight_in_transformers_4_37(tiny_model, tmp_path):
    folder, expected = _export_and_expected(_trained_looking(tiny_model), tmp_path)
    result = run_437(FRESH_LOAD, str(folder), str(tmp_path / "pixels.pt"), str(tmp_path / "out.pt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    got = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(got["last"], expected.last_hidden_state, rtol=0, atol=1e-6)


def test_tiny_config_helper_is_small():
    assert sum(p.numel() for p in FGCLIPModel(tiny_config()).parameters()) < 3_000_000


def test_new_models_and_clip_imports_derive_fgclip_parts_by_one_rule(hub_copy):
    fresh = FGCLIPModel(tiny_config())
    state = fresh.state_dict()
    for name, value in derived_weights(state, fresh.config).items():
        assert torch.equal(state[name], value), name
    folder = hub_copy("openai/clip-vit-base-patch16")
    config, converted = converted_checkpoint(folder, "clip")  # data only: no model is built
    loaded = FGCLIPModel.from_pretrained(folder).state_dict()
    for name, value in derived_weights(load_file(str(folder / "model.safetensors")), config).items():
        assert torch.equal(converted[name], value) and torch.equal(loaded[name], value), name
    assert loaded["logit_scale_region"].item() == loaded["logit_scale"].item() == pytest.approx(4.6052)  # trained


def test_the_config_can_start_the_fine_grained_temperatures_elsewhere(tmp_path):
    model = FGCLIPModel(tiny_config(region_logit_scale_init_value=1.5))
    assert model.logit_scale_region.item() == 1.5 and model.logit_scale_hard.item() == model.logit_scale.item()
    model.save_pretrained(tmp_path)
    loaded = FGCLIPModel.from_pretrained(tmp_path)
    with torch.no_grad():
        loaded.logit_scale.fill_(3.0)
        loaded.logit_scale_hard.fill_(0.1)
    loaded.reset_fine_grained_temperatures()  # as the trainer starts stage 2, on a loaded model too
    assert (loaded.logit_scale_region.item(), loaded.logit_scale_hard.item()) == (1.5, 3.0)


def test_weights_that_do_not_fit_the_config_are_one_line_errors(hub_copy, tmp_path):
    folder = tmp_path / "clip"
    shutil.copytree(hub_copy("openai/clip-vit-base-patch16"), folder)
    state = load_file(str(folder / "model.safetensors"))
    state["text_projection.weight"] = state["text_projection.weight"][:, :-1].contiguous()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(UserError, match=r"text_projection.weight has shape \(\d+, \d+\), the config gives"):
        FGCLIPModel.from_pretrained(folder)
    del state["visual_projection.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(UserError, match=r"weights do not fit its config.json \(missing \['visual_projection"):
        FGCLIPModel.from_pretrained(folder)


def test_short_text_groups_is_saved_with_the_model(tmp_path):
    FGCLIPModel(tiny_config(short_text_groups=8)).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["short_text_groups"] == 8
    assert FGCLIPModel.from_pretrained(tmp_path).config.short_text_groups == 8
    with pytest.raises(ValueError, match="short_text_groups must be a positive integer"):
        tiny_config(short_text_groups=0)
