"""open_clip's twin has exactly FG-CLIP's towers: same config as open_clip's ViT-B-16, same parameter count."""

from __future__ import annotations

import open_clip
import pytest

from benchmarks.shapes import SHAPES, build_fgclip, build_open_clip_twin, get_shape, open_clip_config, parameter_count


def test_b16_twin_is_open_clips_vit_b_16():
    twin = open_clip_config(get_shape("b16").config())
    reference = open_clip.get_model_config("ViT-B-16")
    assert twin["embed_dim"] == reference["embed_dim"]
    for tower in ("vision_cfg", "text_cfg"):
        for key, value in reference[tower].items():
            assert twin[tower][key] == value, (tower, key)
    assert twin["vision_cfg"]["head_width"] == 64 and twin["vision_cfg"]["mlp_ratio"] == 4.0
    assert twin["quick_gelu"]  # OpenAI CLIP's activation, as Hugging Face's CLIPConfig


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_twin_parameters_equal_fgclip_without_its_long_text_parts(name):
    shape = SHAPES[name]
    config = shape.config()
    ours, twin = build_fgclip(shape), build_open_clip_twin(config)
    text_width = config.text_config.hidden_size
    long_text_parts = text_width * config.projection_dim + config.long_max_position_embeddings * text_width + 2
    assert parameter_count(ours) - long_text_parts == parameter_count(twin)


def test_unknown_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model shape"):
        get_shape("huge")
