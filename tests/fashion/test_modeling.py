"""The Fashion-FINE model: tokens vs the towers' embeddings, the global + local mix by hand, padding, the
composition at initialisation, and folders (save/load through the Auto classes, towers of other kinds)."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from fgclip import FashionFINEConfig, FashionFINEModel, FGCLIPModel, FGCLIPTokenizer
from tests.fashion.conftest import tiny_fashion_model
from tests.hub_copies.clip import make_hub_copy

TEXTS = ["a red striped cotton shirt with long sleeves", "a dress"]


@pytest.fixture(scope="module")
def tokens():
    return FGCLIPTokenizer()(TEXTS)


def pixels(n=2, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_tokens_carry_the_towers_global_embeddings(tokens):
    model = tiny_fashion_model().eval()
    image_tokens = model.image_tokens(pixels())
    assert image_tokens.shape == (2, 1 + 16, 16)  # CLS + a 4x4 patch grid, projected to 16
    torch.testing.assert_close(image_tokens[:, 0], model.encode_image(pixels(), normalize=False))
    text_tokens, mask = model.text_tokens(tokens["input_ids"], tokens["attention_mask"])
    eos = mask.sum(1) - 1
    assert mask[1].sum() == 4  # BOS, "a", "dress", EOS; the padding is out
    torch.testing.assert_close(text_tokens[torch.arange(2), eos], model.encode_text(**tokens, normalize=False))


@torch.no_grad()
def test_the_global_local_mix_by_hand(tokens):
    model = tiny_fashion_model().eval()
    pooling = model.local_pooling

    def pool(t):  # a_i = softmax(w . tanh(W t_i + b)), local = sum a_i t_i
        weights = (torch.tanh(t @ pooling.hidden.weight.T + pooling.hidden.bias) @ pooling.score.weight.T).softmax(0)
        return (weights * t).sum(0)

    image_tokens = model.image_tokens(pixels())
    for row in range(2):
        glob, local = image_tokens[row, 0], pool(image_tokens[row, 1:])
        expected = F.normalize(F.normalize(glob, dim=0) * 0.95 + F.normalize(local, dim=0) * 0.05, dim=0)
        torch.testing.assert_close(model.encode_image_fused(pixels())[row], expected)
    text_tokens, _ = model.text_tokens(tokens["input_ids"], tokens["attention_mask"])
    words = text_tokens[1, 1:4]  # "a", "dress", EOS: BOS and padding are left out of the local vector
    glob = text_tokens[1, 3]
    expected = F.normalize(F.normalize(glob, dim=0) * 0.75 + F.normalize(pool(words), dim=0) * 0.25, dim=0)
    torch.testing.assert_close(model.encode_text_fused(**tokens)[1], expected)


@torch.no_grad()
def test_padding_does_not_change_a_text_embedding(tokens):
    model = tiny_fashion_model().eval()
    alone = FGCLIPTokenizer()([TEXTS[1]])
    torch.testing.assert_close(model.encode_text_fused(**alone)[0], model.encode_text_fused(**tokens)[1])


@torch.no_grad()
def test_global_only_is_the_towers_embedding(tokens):
    model = tiny_fashion_model(local_pooling=False).eval()
    assert model.local_pooling is None
    torch.testing.assert_close(model.encode_image_fused(pixels()), model.encode_image(pixels()))
    torch.testing.assert_close(model.encode_text_fused(**tokens), model.encode_text(**tokens))


@torch.no_grad()
def test_an_untrained_composition_is_the_zero_shot_sum_and_a_trained_one_is_not(tokens):
    model = tiny_fashion_model().eval()
    references = pixels(seed=3)
    zero_shot = F.normalize(model.encode_image_fused(references) + model.encode_text_fused(**tokens), dim=-1)
    model.config.query_composition = "fusion"
    torch.testing.assert_close(model.compose(references, **tokens), zero_shot)
    for parameter in model.fusion.parameters():
        parameter.add_(0.1 * torch.randn_like(parameter))
    assert not torch.allclose(model.compose(references, **tokens), zero_shot, atol=1e-3)
    model.config.query_composition = "sum"  # folders not finetuned for text-guided retrieval compose by the sum
    torch.testing.assert_close(model.compose(references, **tokens), zero_shot)


def test_forward_gives_what_the_losses_need(tokens):
    model = tiny_fashion_model()
    output = model(pixels(), tokens["input_ids"], tokens["attention_mask"])
    assert output.image_embeds.shape == output.text_embeds.shape == (2, 16)
    assert output.image_tokens.shape == (2, 17, 16) and output.text_mask.dtype == torch.bool
    composed = model(pixels(), tokens["input_ids"], tokens["attention_mask"], reference_pixel_values=pixels(seed=1))
    assert composed.query_embeds.shape == composed.reference_embeds.shape == (2, 16)
    probabilities = model.match(pixels(), tokens["input_ids"], tokens["attention_mask"])
    assert probabilities.shape == (2,) and ((probabilities > 0) & (probabilities < 1)).all()


def test_a_folder_loads_without_remote_code_through_the_auto_classes(tmp_path, tokens):
    model = tiny_fashion_model().eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "fashion_fine" and config["architectures"] == ["FashionFINEModel"]
    assert isinstance(AutoConfig.from_pretrained(tmp_path), FashionFINEConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is FashionFINEModel and isinstance(loaded, FGCLIPModel)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image_fused(pixels()), model.encode_image_fused(pixels()))
        torch.testing.assert_close(loaded.encode_text_fused(**tokens), model.encode_text_fused(**tokens))


def test_new_parts_on_the_towers_of_an_fgclip_folder(tiny_towers_dir, tokens):
    towers = FGCLIPModel.from_pretrained(tiny_towers_dir).eval()
    model = FashionFINEModel.from_pretrained(tiny_towers_dir, fusion_heads=4, text_local_ratio=0.3).eval()
    assert model.config.text_local_ratio == 0.3 and model.config.projection_dim == towers.config.projection_dim
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels()), towers.encode_image(pixels()))
        torch.testing.assert_close(model.encode_text(**tokens), towers.encode_text(**tokens))


@pytest.mark.parametrize("repo_id", ["openai/clip-vit-base-patch16", "qihoo360/fg-clip-base"])
def test_new_parts_on_hub_folders_as_downloaded(repo_id, tmp_path, tokens):
    """A stock OpenAI CLIP folder (legacy eos id 2 in its config) and an official FG-CLIP release."""
    folder = make_hub_copy(repo_id, tmp_path / "hub")
    towers = FGCLIPModel.from_pretrained(folder).eval()
    model = FashionFINEModel.from_pretrained(folder).eval()
    assert model.eos_token_id == 49407  # the tokenizer's end of text, not the config's legacy 2
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), towers.encode_image(images))
        torch.testing.assert_close(model.encode_text(**tokens), towers.encode_text(**tokens))
        if repo_id.startswith("qihoo360"):  # the release's trained long-text parts come along
            torch.testing.assert_close(model.long_text_projection.weight, towers.long_text_projection.weight)
        model.save_pretrained(tmp_path / "saved")
        FGCLIPTokenizer.from_pretrained(folder).save_pretrained(tmp_path / "saved")
        again = FashionFINEModel.from_pretrained(tmp_path / "saved").eval()
        torch.testing.assert_close(again.encode_text_fused(**tokens), model.encode_text_fused(**tokens))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="fusion_heads"):
        tiny_fashion_model(fusion_heads=3)
    with pytest.raises(ValueError, match="text_local_ratio"):
        tiny_fashion_model(text_local_ratio=1.5)
    with pytest.raises(ValueError, match="query_composition"):
        tiny_fashion_model(query_composition="concat")
