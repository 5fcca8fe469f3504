"""Fashion-FINE fusion: parameter-free attention pooling, the g*(1-r) + l*r mix, the text token mask."""

from __future__ import annotations

import math

import pytest
import torch

from eval.common.fusion import FusionSettings, attention_pool, fuse, text_token_mask


def test_attention_pool_by_hand():
    query = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # the second token is normalised to [0, 1]
    pooled = attention_pool(query, tokens, None, temperature=1.0)
    w1, w2 = math.e / (math.e + 1), 1 / (math.e + 1)  # softmax of scores (1, 0)
    expected = torch.tensor([[w1, w2]]) / math.hypot(w1, w2)
    torch.testing.assert_close(pooled, expected)


def test_attention_pool_ignores_masked_tokens_and_needs_one_valid():
    query = torch.tensor([[1.0, 0.0]])
    tokens = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    pooled = attention_pool(query, tokens, torch.tensor([[True, False]]), temperature=0.1)
    torch.testing.assert_close(pooled, torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="valid token"):
        attention_pool(query, tokens, torch.tensor([[False, False]]), temperature=0.1)


def test_fuse_formula_and_extremes():
    glob, local = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    torch.testing.assert_close(fuse(glob, local, 0.25), torch.tensor([[0.75, 0.25]]) / math.hypot(0.75, 0.25))
    torch.testing.assert_close(fuse(glob, local, 0.0), glob)
    torch.testing.assert_close(fuse(glob, local, 1.0), torch.tensor([[0.0, 1.0]]))


def test_text_token_mask_keeps_words_up_to_the_first_eos():
    eos = 9
    ids = torch.tensor([[1, 5, 6, eos, eos], [1, 7, eos, eos, eos]])
    attention = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    mask = text_token_mask(ids, attention, eos)
    assert mask.tolist() == [[False, True, True, True, False], [False, True, True, False, False]]


def test_settings_are_validated():
    assert FusionSettings().as_dict() == {"image_ratio": 0.05, "text_ratio": 0.25, "temperature": 0.1}
    with pytest.raises(ValueError):
        FusionSettings(image_ratio=1.5)
    with pytest.raises(ValueError):
        FusionSettings(temperature=0)
