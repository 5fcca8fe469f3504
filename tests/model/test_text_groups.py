"""Length groups: optimal cuts, every row in one group, and grouped encoding equal to plain encoding."""

from __future__ import annotations

import itertools

import pytest
import torch

from fgclip import FGCLIPTokenizer
from fgclip.model.text_groups import length_groups, optimal_length_cuts


def _padded_tokens(lengths: list[int], bounds: list[int]) -> int:
    total, lower = 0, -1
    for upper in bounds:
        total += upper * sum(1 for length in lengths if lower < length <= upper)
        lower = upper
    return total


def test_cuts_are_optimal_against_brute_force():
    lengths = [4, 4, 5, 6, 6, 6, 9, 12, 12, 20, 31]
    values = sorted(set(lengths))
    for groups in (1, 2, 3):
        best = min(
            _padded_tokens(lengths, sorted(set(cut) | {values[-1]}))
            for cut in itertools.combinations(values[:-1], groups - 1)
        )
        cuts = optimal_length_cuts(lengths, groups)
        assert len(cuts) <= groups and cuts[-1] == values[-1]
        assert _padded_tokens(lengths, cuts) == best


def test_few_distinct_lengths_get_one_group_each():
    assert optimal_length_cuts([3, 3, 7], 4) == [3, 7]
    with pytest.raises(ValueError):
        optimal_length_cuts([3], 0)


def test_every_row_lands_in_exactly_one_group():
    mask = torch.zeros(9, 10, dtype=torch.long)
    for row, length in enumerate([2, 10, 3, 3, 7, 2, 9, 5, 4]):
        mask[row, :length] = 1
    groups = length_groups(mask, 3)
    rows = torch.cat([rows for rows, _ in groups])
    assert sorted(rows.tolist()) == list(range(9))
    for rows, width in groups:
        assert int(mask[rows].sum(1).max()) == width


def test_grouped_encoding_matches_plain_encoding_and_gradients(tiny_model):
    tokenizer = FGCLIPTokenizer()
    texts = [
        "a dog",
        "a small brown dog with a red collar on a sofa",
        "red",
        "two cats sleeping on a bed",
        "a",
        "a car parked next to a tall tree in the street at night",
    ]
    tokens = tokenizer(texts)
    tiny_model.train()
    plain = tiny_model.encode_text(tokens["input_ids"], tokens["attention_mask"])
    plain_grad = torch.autograd.grad(plain.square().sum(), tiny_model.text_projection.weight)[0]
    grouped = tiny_model.encode_text(tokens["input_ids"], tokens["attention_mask"], max_groups=3)
    grouped_grad = torch.autograd.grad(grouped.square().sum(), tiny_model.text_projection.weight)[0]
    torch.testing.assert_close(grouped, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped_grad, plain_grad, atol=1e-5, rtol=1e-5)


def test_forward_uses_groups_only_when_asked(tiny_model):
    tokenizer = FGCLIPTokenizer()
    tokens = tokenizer(["a dog", "a small brown dog with a red collar", "red"])
    pixels = torch.randn(1, 3, 32, 32)
    plain = tiny_model(pixels, short_input_ids=tokens["input_ids"], short_attention_mask=tokens["attention_mask"])
    tiny_model.config.short_text_groups = 3
    grouped = tiny_model(pixels, short_input_ids=tokens["input_ids"], short_attention_mask=tokens["attention_mask"])
    torch.testing.assert_close(grouped.short_text_embeds, plain.short_text_embeds, atol=1e-5, rtol=1e-5)


def test_left_padded_texts_fall_back_to_plain_encoding(tiny_model):
    tokens = FGCLIPTokenizer()(["a dog", "a small brown dog"])
    ids, mask = tokens["input_ids"].flip(1), tokens["attention_mask"].flip(1)
    with torch.no_grad():
        torch.testing.assert_close(tiny_model.encode_text(ids, mask, max_groups=2), tiny_model.encode_text(ids, mask))
