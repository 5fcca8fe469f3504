"""Checkpoints the Hugging Face way: round trip, stock CLIP init, official import, vision-tower export."""

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, CLIPModel, LlamaConfig, LlamaForCausalLM

from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.convert import main as convert_main
from fgclip.model.conversion import (
    OFFICIAL_KEY_MAP,
    CheckpointError,
    detect_checkpoint_kind,
    save_with_processors,
)
from fgclip.model.positions import stretch_position_table
from fgclip.tokenizer import CLIP_SPECIAL_TOKEN_IDS
from tests.conftest import tiny_config
from tests.hub_copies.clip import HUB_FOLDERS, OFFICIAL_FGCLIP_IDS, STOCK_CLIP_IDS

REPO = Path(__file__).resolve().parents[2]


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
        torch.testing.assert_close(model.encode_image(pixels, normalize=False),
                                   clip.get_image_features(pixels).pooler_output, rtol=0, atol=1e-5)
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
    assert convert_main(["from-official", str(release), str(tmp_path / "ours")]) == 0
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
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"config.json describes a 'llama' model, which FG-CLIP does not read"):
        FGCLIPModel.from_pretrained(tmp_path)
    capsys.readouterr()
    assert convert_main(["export-vision", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "llama" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_from_clip_on_every_stock_folder(hub_copy, tmp_path):
    for repo_id in STOCK_CLIP_IDS:
        out = tmp_path / repo_id.replace("/", "--")
        assert convert_main(["from-clip", str(hub_copy(repo_id)), str(out)]) == 0
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


def _load_in_fresh_interpreter(python: str, folder: Path, tmp_path: Path) -> dict:
    script = tmp_path / "fresh_load.py"
    script.write_text(FRESH_LOAD)
    out = tmp_path / "features.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([python, str(script), str(folder), str(tmp_path / "pixels.pt"), str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out)


def test_exported_tower_loads_in_stock_transformers_without_fgclip(tiny_model, tmp_path):
    folder, expected = _export_and_expected(_trained_looking(tiny_model), tmp_path)
    names = set(load_file(str(folder / "model.safetensors")))
    assert names and all(name.startswith("vision_model.") for name in names)
    got = _load_in_fresh_interpreter(sys.executable, folder, tmp_path)
    torch.testing.assert_close(got["last"], expected.last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["penultimate"], expected.hidden_states[-2], rtol=0, atol=1e-6)


def _transformers_437_python() -> str:
    """A virtual environment with transformers 4.37.2 (the original LLaVA's pin) over this torch, cached."""
    venv = Path(os.environ.get("FGCLIP_TF437_VENV", Path.home() / ".cache" / "fgclip" / "tf437-venv"))
    python = venv / "bin" / "python"
    marker = venv / ".ready"
    if not marker.is_file():
        # This interpreter's packages (torch, ...) are seen after the venv's own through a .pth file, not
        # --system-site-packages, which would give the base interpreter's when the tests run in a venv.
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (Path(own) / "fgclip_parent_packages.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", "transformers==4.37.2"],
                                 capture_output=True, text=True, timeout=900)
        if install.returncode != 0:
            pytest.skip(f"could not install transformers 4.37.2: {install.stderr.strip().splitlines()[-1:]}")
        marker.touch()
    return str(python)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_exported_tower_loads_every_weight_in_transformers_4_37(tiny_model, tmp_path):
    python = _transformers_437_python()
    version = subprocess.run([python, "-c", "import transformers; print(transformers.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "4.37.2"
    folder, expected = _export_and_expected(_trained_looking(tiny_model), tmp_path)
    got = _load_in_fresh_interpreter(python, folder, tmp_path)
    torch.testing.assert_close(got["last"], expected.last_hidden_state, rtol=0, atol=1e-6)


def test_save_with_processors_makes_a_self_contained_folder(tiny_model, tmp_path):
    save_with_processors(tiny_model, tmp_path)
    from transformers import CLIPImageProcessor, CLIPTokenizer

    assert CLIPTokenizer.from_pretrained(tmp_path)("a cat")["input_ids"] == [49406, 320, 2368, 49407]
    processor = CLIPImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 32, "width": 32} and not processor.do_center_crop


def test_tiny_config_helper_is_small():
    assert sum(p.numel() for p in FGCLIPModel(tiny_config()).parameters()) < 3_000_000
