"""The dense (value-path) features: equal to FG-CLIP's own dense grid, and carried by the dense tower."""

import torch

from fgclip.model.dense_tower import FGCLIPDenseVisionModel, to_dense_tower
from fgclip.value_path import DENSE_MODEL_TYPE, value_path_features


def test_value_path_features_are_encode_dense_before_the_projection(tiny_model):
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        trunk = tiny_model.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        features = value_path_features(tiny_model.vision_model, trunk)  # (B, 1 + 16, C), CLS first
        projected = tiny_model.visual_projection(features[:, 1:]).reshape(2, 4, 4, -1)
        expected = tiny_model.encode_dense(pixels, normalize=False)
    torch.testing.assert_close(projected, expected, rtol=1e-5, atol=1e-5)


def test_dense_tower_keeps_weights_and_puts_dense_features_last(tiny_model):
    tower = tiny_model.vision_model
    dense = to_dense_tower(tower).eval()
    assert isinstance(dense, FGCLIPDenseVisionModel) and dense.config.model_type == DENSE_MODEL_TYPE
    for name, tensor in tower.state_dict().items():
        torch.testing.assert_close(dense.state_dict()[name], tensor)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stock = tower(pixels, output_hidden_states=True).hidden_states
        ours = dense(pixels, output_hidden_states=-1).hidden_states
    assert len(ours) == len(stock)
    torch.testing.assert_close(ours[-2], stock[-2])  # entries before the last block are the stock ones
    torch.testing.assert_close(ours[-1], value_path_features(tower, stock[-2]))
    assert not torch.allclose(ours[-1], stock[-1])  # the value path is not the ordinary last block
