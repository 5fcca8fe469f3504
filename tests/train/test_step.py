"""The training step: features map to the loss by the batch's indices; a step lowers the loss."""

import torch

from fgclip.data.collate import collate_records
from fgclip.data.dataset import Sample
from fgclip.losses import FGCLIPLoss, LossWeights
from fgclip.train.config import stage_loss_weights
from fgclip.train.step import compute_loss, loss_inputs, train_step


def make_batch(tokenizer):
    generator = torch.Generator().manual_seed(0)
    samples = [
        Sample(
            torch.randn(3, 32, 32, generator=generator),
            "a long red scene",
            "a red cube",
            torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
            ["a red cube", "a tall blue ball"],
            ["a red cube", "a blue ball"],
            [["a green cube", "a red ball"], ["a red ball"]],
        ),
        Sample(
            torch.randn(3, 32, 32, generator=generator),
            "a long blue scene",
            "a blue ball",
            torch.tensor([[0.2, 0.2, 0.9, 0.7]]),
            ["a blue ball"],
            ["a blue ball"],
            [[]],
        ),
    ]
    return collate_records(samples, tokenizer, with_regions=True)


def test_loss_inputs_gather_the_right_rows(tiny_model, tokenizer):
    batch = make_batch(tokenizer)
    output = tiny_model(**batch.model_inputs())
    inputs = loss_inputs(output, batch)
    texts = tokenizer(["a red cube", "a blue ball", "a tall blue ball", "a green cube", "a red ball"])
    expected = tiny_model.encode_text(texts["input_ids"], texts["attention_mask"])
    torch.testing.assert_close(inputs.short_text, expected[[0, 1]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(inputs.region_text, expected[[0, 2, 1]], atol=1e-5, rtol=1e-4)
    assert inputs.hard_candidates.shape == (3, 3, expected.shape[1])
    torch.testing.assert_close(inputs.hard_candidates[0], expected[[0, 3, 4]], atol=1e-5, rtol=1e-4)
    assert inputs.hard_mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    torch.testing.assert_close(
        inputs.region, tiny_model.encode_regions(batch.pixel_values, batch.boxes), atol=1e-5, rtol=1e-4
    )


def test_stage_weights_select_the_terms(tiny_model, tokenizer):
    batch = make_batch(tokenizer)
    stage1 = compute_loss(tiny_model, batch, FGCLIPLoss(stage_loss_weights(1)))
    stage2 = compute_loss(tiny_model, batch, FGCLIPLoss(stage_loss_weights(2)))
    assert set(stage1.terms) == {"long", "short"}
    assert set(stage2.terms) == {"long", "short", "region", "hard"}
    expected = stage2.terms["long"] + stage2.terms["short"] + 0.1 * stage2.terms["region"] + 0.5 * stage2.terms["hard"]
    torch.testing.assert_close(stage2.total, expected)
    assert stage_loss_weights(1, LossWeights(long=2.0)).long == 2.0


def test_train_step_lowers_the_loss_on_a_repeated_batch(tiny_model, tokenizer):
    batch = make_batch(tokenizer)
    tiny_model.train()
    loss_fn = FGCLIPLoss(stage_loss_weights(2))
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    first = train_step(tiny_model, batch, loss_fn, optimizer, grad_clip=1.0).total.item()
    for _ in range(5):
        last = train_step(tiny_model, batch, loss_fn, optimizer, grad_clip=1.0).total.item()
    assert last < first
