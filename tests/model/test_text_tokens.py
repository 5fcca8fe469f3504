"""FGCLIPModel.encode_text_tokens: per-token embeddings in the joint space (used by Fashion-FINE fusion)."""

from __future__ import annotations

import torch

from fgclip import FGCLIPModel
from tests.conftest import tiny_config


def test_token_at_first_eos_is_the_text_embedding(tiny_model, tokenizer):
    batch = tokenizer(["a red car", "two small brown dogs on a sofa"])
    with torch.no_grad():
        tokens = tiny_model.encode_text_tokens(**batch)
        pooled = tiny_model.encode_text(**batch)
    assert tokens.shape == (2, batch["input_ids"].shape[1], 16)
    first_eos = (batch["input_ids"] == tokenizer.eos_token_id).int().argmax(dim=1)
    torch.testing.assert_close(tokens[torch.arange(2), first_eos], pooled)
    torch.testing.assert_close(tokens.norm(dim=-1), torch.ones(tokens.shape[:2]))


def test_long_path_uses_the_long_projection(tokenizer):
    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config()).eval()
    with torch.no_grad():
        model.long_text_projection.weight.mul_(-1.0)  # make the two projections differ
        batch = tokenizer(["a very long caption " * 30], long=True)
        assert batch["input_ids"].shape[1] > 77
        tokens = model.encode_text_tokens(**batch, long=True, normalize=False)
        pooled = model.encode_text(**batch, long=True, normalize=False)
        short = model.encode_text_tokens(**tokenizer(["a very long caption " * 30]), normalize=False)
    eos = int((batch["input_ids"][0] == tokenizer.eos_token_id).int().argmax())
    torch.testing.assert_close(tokens[0, eos], pooled[0])
    assert short.shape[1] == 77
    assert not torch.allclose(tokens[0, 1], short[0, 1])
