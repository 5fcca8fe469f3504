"""The value-path block: the model's dense grid, and the same code on a transformers 4.37 tower."""

import subprocess
import sys
import textwrap

import pytest
import torch

from fgclip.value_path import value_path_block, value_path_features, vision_core
from tests.transformers_437 import run_437


def test_the_model_dense_grid_is_the_projected_value_path(tiny_model):
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        trunk = tiny_model.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        features = value_path_features(tiny_model.vision_model, trunk)
        dense = tiny_model.encode_dense(pixels, normalize=False)
    assert features.shape == (2, 17, 32)
    torch.testing.assert_close(dense.reshape(2, 16, -1), tiny_model.visual_projection(features[:, 1:]), rtol=0, atol=0)


def test_the_block_keeps_the_mlp_and_both_residuals(tiny_model):
    """With the value projection zeroed, only the MLP branch changes the tokens."""
    block = tiny_model.vision_model.encoder.layers[-1]
    hidden = torch.randn(1, 17, 32)
    with torch.no_grad():
        block.self_attn.v_proj.weight.zero_()
        block.self_attn.v_proj.bias.zero_()
        attended = hidden + block.self_attn.out_proj.bias
        expected = attended + block.mlp(block.layer_norm2(attended))
        torch.testing.assert_close(value_path_block(block, hidden), expected, rtol=0, atol=1e-6)
    assert vision_core(tiny_model.vision_model) is tiny_model.vision_model  # 5.x: the tower is the transformer


def test_imports_torch_only():
    code = "import sys, fgclip.value_path; print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


UNDER_437 = textwrap.dedent("""
    import sys, torch
    from transformers import CLIPVisionModel
    from fgclip.value_path import value_path_features
    folder, pixels_file, out_file = sys.argv[1:4]
    tower = CLIPVisionModel.from_pretrained(folder).eval()  # 4.x: the transformer sits in tower.vision_model
    assert hasattr(tower, "vision_model") and "fgclip.model" not in sys.modules
    with torch.no_grad():
        trunk = tower(torch.load(pixels_file), output_hidden_states=True).hidden_states[-2]
        torch.save(value_path_features(tower, trunk), out_file)
""")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_same_module_runs_under_transformers_4_37(tiny_model, tmp_path):
    """What lmm_integration's towers import in the original LLaVA's environment gives the model's features."""
    pixels = torch.randn(2, 3, 32, 32)
    torch.save(pixels, tmp_path / "pixels.pt")
    folder = tiny_model.export_vision_tower(tmp_path / "tower")
    result = run_437(
        UNDER_437,
        str(folder),
        str(tmp_path / "pixels.pt"),
        str(tmp_path / "out.pt"),
        cwd=tmp_path,
        with_repository=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with torch.no_grad():
        trunk = tiny_model.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        expected = value_path_features(tiny_model.vision_model, trunk)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=1e-6)
