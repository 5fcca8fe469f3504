"""The text levers are exact: dynamic padding and de-duplication change the layout, not the loss or gradients."""

from __future__ import annotations

import pytest
import torch

from benchmarks.levers import expand_short_texts, pad_to_fixed, short_only, without_text_levers
from benchmarks.workload import make_batch
from fgclip import FGCLIPLoss, FGCLIPTokenizer
from fgclip.losses import LossWeights
from fgclip.tokenizer import LONG_LENGTH, SHORT_LENGTH
from fgclip.train.step import compute_loss


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    result = compute_loss(model, batch, FGCLIPLoss(LossWeights()))
    result.total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return result, grads


@pytest.fixture
def batch(stage2_samples):
    return make_batch(stage2_samples, with_regions=True)


@pytest.fixture
def pad_id():
    return FGCLIPTokenizer().tokenizer.pad_token_id


def test_fixed_padding_matches_the_tokenizers_max_length_padding(stage2_samples, pad_id):
    tokenizer = FGCLIPTokenizer()
    batch = make_batch(stage2_samples, with_regions=False, tokenizer=tokenizer)
    fixed = pad_to_fixed(batch, pad_id)
    expected = tokenizer([s.short_caption for s in stage2_samples], padding="max_length")
    assert fixed.short_input_ids.shape[1] == SHORT_LENGTH and fixed.long_input_ids.shape[1] == LONG_LENGTH
    assert torch.equal(fixed.short_input_ids, expected["input_ids"])
    assert torch.equal(fixed.short_attention_mask, expected["attention_mask"])


def test_expansion_gives_every_use_its_own_row(batch):
    expanded = expand_short_texts(batch)
    uses = batch.num_images + batch.num_regions + int(batch.hard_mask.sum())
    assert expanded.short_input_ids.shape[0] == uses > batch.short_input_ids.shape[0]  # the batch has duplicates
    for old_index, new_index in (
        (batch.caption_index, expanded.caption_index),
        (batch.region_text_index, expanded.region_text_index),
        (batch.hard_index[batch.hard_mask], expanded.hard_index[batch.hard_mask]),
    ):
        assert torch.equal(batch.short_input_ids[old_index], expanded.short_input_ids[new_index])


@pytest.mark.parametrize("lever_off", ["fixed_padding", "no_dedup", "both"])
def test_levers_give_the_same_loss_and_gradients(tiny_model, batch, pad_id, lever_off):
    tiny_model.train()
    reference = {
        "fixed_padding": lambda b: pad_to_fixed(b, pad_id),
        "no_dedup": expand_short_texts,
        "both": lambda b: without_text_levers(b, pad_id),
    }[lever_off](batch)
    with_levers, grads = _loss_and_grads(tiny_model, batch)
    without, reference_grads = _loss_and_grads(tiny_model, reference)
    assert set(with_levers.terms) == {"long", "short", "region", "hard"}
    for name in with_levers.terms:
        torch.testing.assert_close(with_levers.terms[name], without.terms[name], atol=1e-5, rtol=1e-5)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_length_groups_in_the_step_give_the_same_loss_and_gradients(tiny_model, batch):
    tiny_model.train()
    plain, grads = _loss_and_grads(tiny_model, batch)
    tiny_model.config.short_text_groups = 3
    grouped, grouped_grads = _loss_and_grads(tiny_model, batch)
    torch.testing.assert_close(grouped.total, plain.total, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grouped_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_short_only_drops_the_long_captions(batch):
    stripped = short_only(batch)
    assert stripped.long_input_ids is None and stripped.long_attention_mask is None
    assert stripped.model_inputs()["long_input_ids"] is None
