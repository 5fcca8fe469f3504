"""FGCLIPModel against stock transformers CLIP and against the method's definitions."""

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from fgclip.model.positions import stretch_position_table
from tests.conftest import TINY_TEXT, TINY_VISION


def stock_clip_with_same_weights(model) -> CLIPModel:
    clip = CLIPModel(CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=16)).eval()
    incompatible = clip.load_state_dict(model.state_dict(), strict=False)
    assert not incompatible.missing_keys
    return clip


@pytest.fixture
def pixels():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)


def test_encode_image_equals_clip_get_image_features(tiny_model, pixels):
    clip = stock_clip_with_same_weights(tiny_model)
    with torch.no_grad():
        ours = tiny_model.encode_image(pixels, normalize=False)
        theirs = clip.get_image_features(pixels).pooler_output
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_short_encode_text_equals_clip_get_text_features(tiny_model, tokenizer):
    clip = stock_clip_with_same_weights(tiny_model)
    batch = tokenizer(["a photo of a red cube", "two small green spheres on a wooden table", "dog"])
    with torch.no_grad():
        ours = tiny_model.encode_text(batch["input_ids"], batch["attention_mask"], normalize=False)
        theirs = clip.get_text_features(**batch).pooler_output
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_normalize_gives_unit_vectors(tiny_model, pixels, tokenizer):
    with torch.no_grad():
        assert torch.allclose(tiny_model.encode_image(pixels).norm(dim=-1), torch.ones(3), atol=1e-5)
        text = tiny_model.encode_text(tokenizer(["a cat"])["input_ids"], long=True)
    assert torch.allclose(text.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_long_and_short_captions_of_full_length_encode(tiny_model, tokenizer):
    long_text = " ".join(["word"] * 400)
    long_batch = tokenizer([long_text], long=True)
    short_batch = tokenizer([long_text])
    assert long_batch["input_ids"].shape[1] == 248 and short_batch["input_ids"].shape[1] == 77
    with torch.no_grad():
        assert tiny_model.encode_text(**long_batch, long=True).shape == (1, 16)
        assert tiny_model.encode_text(**short_batch).shape == (1, 16)


def test_ids_longer_than_the_path_are_truncated_not_an_error(tiny_model, tokenizer):
    ids = tokenizer([" ".join(["word"] * 400)], long=True)["input_ids"]  # 248 ids
    with torch.no_grad():
        short = tiny_model.encode_text(ids)  # short path takes 77 of them, EOS kept at the end
        expected = tiny_model.encode_text(tokenizer([" ".join(["word"] * 400)])["input_ids"])
    torch.testing.assert_close(short, expected, rtol=0, atol=1e-6)


def test_text_without_eos_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="EOS"):
        tiny_model.encode_text(torch.tensor([[49406, 320, 1125]]))


def test_long_path_uses_the_stretched_tables(tiny_model, tokenizer):
    """With fresh tables, slot p of the long path equals the stretched short table at p."""
    short_table = tiny_model.text_model.embeddings.position_embedding.weight
    table = tiny_model.long_text_positions(248)
    torch.testing.assert_close(table, stretch_position_table(short_table.detach()), rtol=0, atol=0)
    torch.testing.assert_close(tiny_model.long_text_projection.weight, tiny_model.text_projection.weight)


def test_only_the_residual_table_trains_and_only_from_slot_20(tiny_model, tokenizer):
    tiny_model.train()
    batch = tokenizer([" ".join(["word"] * 100)], long=True)
    tiny_model.encode_text(**batch, long=True).sum().backward()
    positions = tiny_model.long_text_positions
    assert not positions.original.requires_grad and positions.original.grad is None
    grad = positions.residual.grad
    assert torch.all(grad[:20] == 0) and grad[20 : batch["input_ids"].shape[1]].abs().sum() > 0


def test_padding_to_the_longest_text_is_exact(tiny_model, tokenizer):
    texts = ["a red cube", "a very small shiny blue metal sphere left of a large rubber cylinder"]
    for long in (False, True):
        dynamic = tokenizer(texts, long=long)
        fixed = tokenizer(texts, long=long, padding="max_length")
        assert dynamic["input_ids"].shape[1] < fixed["input_ids"].shape[1]
        with torch.no_grad():
            a = tiny_model.encode_text(**dynamic, long=long)
            b = tiny_model.encode_text(**fixed, long=long)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_dense_grid_shape_and_value_path(tiny_model, pixels):
    with torch.no_grad():
        dense = tiny_model.encode_dense(pixels, normalize=False)
        assert dense.shape == (3, 4, 4, 16)
        # Independent computation of the value path from the HF hidden states.
        hidden = tiny_model.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        block = tiny_model.vision_model.encoder.layers[-1]
        x = hidden + block.self_attn.out_proj(block.self_attn.v_proj(block.layer_norm1(hidden)))
        x = x + block.mlp(block.layer_norm2(x))
        expected = tiny_model.visual_projection(tiny_model.vision_model.post_layernorm(x[:, 1:]))
    torch.testing.assert_close(dense.reshape(3, 16, 16), expected, rtol=0, atol=1e-5)


def test_full_image_box_is_the_mean_of_the_grid(tiny_model, pixels):
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0]])] * 3
    with torch.no_grad():
        regions = tiny_model.encode_regions(pixels, boxes, normalize=False)
        dense = tiny_model.encode_dense(pixels, normalize=False)
    torch.testing.assert_close(regions, dense.mean(dim=(1, 2)), rtol=0, atol=1e-5)


def test_box_covering_one_cell_is_that_cell(tiny_model, pixels):
    # Grid is 4x4: cell (row 2, column 1) spans x in [0.25, 0.5], y in [0.5, 0.75].
    boxes = [
        torch.tensor([[0.25, 0.5, 0.5, 0.75], [0.0, 0.0, 0.25, 0.25]]),
        torch.zeros(0, 4),
        torch.tensor([[0.75, 0.75, 1.0, 1.0]]),
    ]
    with torch.no_grad():
        regions = tiny_model.encode_regions(pixels, boxes, normalize=False)
        dense = tiny_model.encode_dense(pixels, normalize=False)
    assert regions.shape == (3, 16)
    torch.testing.assert_close(regions[0], dense[0, 2, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(regions[1], dense[0, 0, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(regions[2], dense[2, 3, 3], rtol=0, atol=1e-5)


def test_forward_gives_every_training_feature_from_one_image_pass(tiny_model, pixels, tokenizer):
    long = tokenizer(["a long caption"] * 3, long=True)
    short = tokenizer(["a", "b", "c", "d"])
    boxes = [torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([[0.1, 0.1, 0.9, 0.9]] * 2), torch.zeros(0, 4)]
    with torch.no_grad():
        out = tiny_model(
            pixels, long["input_ids"], long["attention_mask"], short["input_ids"], short["attention_mask"], boxes=boxes
        )
        torch.testing.assert_close(out.image_embeds, tiny_model.encode_image(pixels))
        torch.testing.assert_close(out.region_embeds, tiny_model.encode_regions(pixels, boxes))
        torch.testing.assert_close(out.long_text_embeds, tiny_model.encode_text(**long, long=True))
    assert out.short_text_embeds.shape == (4, 16)
    assert torch.allclose(out.logit_scale, torch.tensor(1 / 0.07), rtol=1e-3)
    assert out.logit_scale_region == out.logit_scale and out.logit_scale_hard == out.logit_scale


@pytest.mark.parametrize(
    "box, message",
    [
        ([0.5, 0.1, 0.4, 0.9], "empty box"),
        ([0.1, 0.5, 0.4, 0.5], "empty box"),
        ([-0.1, 0.1, 0.4, 0.9], r"\[0, 1\]"),
        ([0.1, 0.1, 1.2, 0.9], r"\[0, 1\]"),
        ([0.1, 0.1, float("nan"), 0.9], "non-finite"),
    ],
)
def test_invalid_boxes_are_clear_errors(tiny_model, pixels, box, message):
    boxes = [torch.tensor([box])] + [torch.zeros(0, 4)] * 2
    with pytest.raises(ValueError, match=message):
        tiny_model.encode_regions(pixels, boxes)


def test_boxes_must_match_the_batch(tiny_model, pixels):
    with pytest.raises(ValueError, match="list of 3"):
        tiny_model.encode_regions(pixels, [torch.tensor([[0.0, 0.0, 1.0, 1.0]])])
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        tiny_model.encode_regions(pixels, [torch.zeros(2, 3)] * 3)


def test_wrong_image_size_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        tiny_model.encode_image(torch.randn(1, 3, 64, 64))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model, pixels, tokenizer):
    tiny_model.train()
    batch = tokenizer(["a red cube", "a blue ball", "a cat"], long=True)

    def grads():
        tiny_model.zero_grad()
        loss = (tiny_model.encode_image(pixels) * tiny_model.encode_text(**batch, long=True)).sum()
        loss.backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}

    plain = grads()
    tiny_model.activation_checkpointing_enable()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-5, atol=1e-6)
