from benchmarks.shapes import get_shape
from fgclip.model.flops import image_forward_flops, text_forward_flops, train_step_flops

VIT_B_16 = get_shape("b16").config()  # OpenAI CLIP ViT-B/16 at 224 px (tests/benchmarks/test_shapes.py checks it)


def test_vit_b16_matches_the_published_41_gflops():
    """open_clip profiles ViT-B/16 (224 px image + 77-token text) at 41.1 GFLOPs: 35.1 image + 6.0 text."""
    image, text = image_forward_flops(VIT_B_16), text_forward_flops(VIT_B_16, 77)
    assert abs(image / 1e9 - 35.13) < 0.1
    assert abs(text / 1e9 - 5.96) < 0.05
    assert abs((image + text) / 1e9 - 41.09) < 0.15


def test_train_step_is_three_forwards_and_stage2_costs_more():
    stage1 = train_step_flops(VIT_B_16, images=8, long_tokens=248, short_tokens=77)
    assert stage1 == 3 * 8 * (
        image_forward_flops(VIT_B_16) + text_forward_flops(VIT_B_16, 248) + text_forward_flops(VIT_B_16, 77)
    )
    stage2 = train_step_flops(VIT_B_16, images=8, long_tokens=248, short_tokens=77, extra_short_texts=44, dense=True)
    assert stage2 > 2 * stage1
