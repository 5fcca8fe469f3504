"""Loading a LLaVA vision tower from FG-CLIP, stock CLIP and exported tower folders."""

import json

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel

from fgclip import FGCLIPModel
from fgclip.errors import UserError
from lmm_integration.vision import load_vision_tower
from tests.conftest import TINY_TEXT, TINY_VISION


def _hidden(tower, pixels):
    with torch.no_grad():
        return tower(pixels, output_hidden_states=True).hidden_states[-2]


def test_fgclip_folder_gives_its_image_tower_and_square_preprocessing(fgclip_dir):
    loaded = load_vision_tower(fgclip_dir)
    encoder = FGCLIPModel.from_pretrained(fgclip_dir)
    assert loaded.kind == "fgclip" and type(loaded.model) is CLIPVisionModel
    assert (loaded.hidden_size, loaded.patch_size, loaded.num_patches) == (32, 8, 16)
    assert loaded.image_processor.do_center_crop is False and loaded.image_processor.size == {"height": 32, "width": 32}
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_hidden(loaded.model, pixels), _hidden(encoder.vision_model, pixels))


def test_exported_tower_and_stock_clip_folders_load_the_same_weights(fgclip_dir, tmp_path):
    FGCLIPModel.from_pretrained(fgclip_dir).export_vision_tower(tmp_path / "tower")
    exported = load_vision_tower(tmp_path / "tower")
    clip = CLIPModel(CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=16))
    clip.save_pretrained(tmp_path / "clip")
    from_clip = load_vision_tower(tmp_path / "clip")
    assert (exported.kind, from_clip.kind) == ("clip_vision_model", "clip")
    pixels = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(_hidden(exported.model, pixels), _hidden(load_vision_tower(fgclip_dir).model, pixels))
    torch.testing.assert_close(_hidden(from_clip.model, pixels), _hidden(clip.vision_model, pixels))


def test_dense_request_wraps_the_same_weights(fgclip_dir):
    dense = load_vision_tower(fgclip_dir, features="dense")
    assert dense.model.config.model_type == "fgclip_dense_vision" and dense.features == "dense"


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_vision_tower(tmp_path / "nowhere")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="llama"):
        load_vision_tower(tmp_path / "text")
    with pytest.raises(ValueError, match="vision features"):
        load_vision_tower(tmp_path / "text", features="pooled")


def test_tower_folder_with_missing_weights_is_refused(fgclip_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    FGCLIPModel.from_pretrained(fgclip_dir).export_vision_tower(tmp_path / "tower")
    weights = tmp_path / "tower" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if "layers.1." not in k}, str(weights), metadata={"format": "pt"})
    with pytest.raises(UserError, match="missing"):
        load_vision_tower(tmp_path / "tower")
