"""The FG-CLIP losses: against open_clip, hand-computed cases, masking, and 2-process equality."""

import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from fgclip.losses import (
    FGCLIPLoss,
    LossInputs,
    LossWeights,
    global_contrastive_loss,
    hard_negative_loss,
    regional_contrastive_loss,
)


def unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def test_global_loss_equals_open_clip_clip_loss():
    images, texts, scale = unit(8, 16, seed=1), unit(8, 16, seed=2), torch.tensor(14.3)
    expected = ClipLoss()(images, texts, scale)
    torch.testing.assert_close(global_contrastive_loss(images, texts, scale), expected)


def test_hard_negative_loss_by_hand():
    region = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])  # positive first
    scale = torch.tensor(2.0)
    # logits 2, 0, -2 -> -log(e^2 / (e^2 + 1 + e^-2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert hard_negative_loss(region, candidates, scale).item() == pytest.approx(expected, rel=1e-6)


def test_padded_negatives_take_no_probability():
    region = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    loss = hard_negative_loss(region, candidates, torch.tensor(2.0), mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_regions_without_negatives_or_invalid_are_left_out_of_the_hard_loss():
    regions, candidates = unit(3, 8, seed=3), unit(3, 5, 8, seed=4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 1:] = False  # region 1 has no negatives
    mask[2, :] = False  # region 2 is padding
    alone = hard_negative_loss(regions[:1], candidates[:1], torch.tensor(10.0))
    torch.testing.assert_close(hard_negative_loss(regions, candidates, torch.tensor(10.0), mask), alone)


def test_regional_loss_by_hand():
    regions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(3.0)
    # logits [[3, 0], [0, 3]] both ways -> -log(e^3 / (e^3 + 1))
    expected = -math.log(math.exp(3) / (math.exp(3) + 1))
    assert regional_contrastive_loss(regions, texts, scale).item() == pytest.approx(expected, rel=1e-6)


def test_padded_regions_change_nothing_not_even_gradients():
    regions, texts = unit(4, 8, seed=5).requires_grad_(), unit(4, 8, seed=6)
    valid = torch.tensor([True, False, True, True])
    masked = regional_contrastive_loss(regions, texts, torch.tensor(10.0), valid)
    masked.backward()
    assert torch.all(regions.grad[1] == 0)
    kept = regional_contrastive_loss(regions.detach()[valid], texts[valid], torch.tensor(10.0))
    torch.testing.assert_close(masked.detach(), kept)
    # Garbage in a padded row does not matter.
    garbage = regions.detach().clone()
    garbage[1] = 1e6
    torch.testing.assert_close(regional_contrastive_loss(garbage, texts, torch.tensor(10.0), valid), kept)


def test_no_valid_region_gives_a_differentiable_zero():
    regions = unit(2, 4).requires_grad_()
    loss = regional_contrastive_loss(regions, unit(2, 4, seed=1), torch.tensor(5.0), torch.zeros(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and regions.grad is not None


def test_combined_loss_uses_the_published_weights():
    images, longs, shorts = unit(4, 8, seed=1), unit(4, 8, seed=2), unit(4, 8, seed=3)
    regions, region_texts, candidates = unit(5, 8, seed=4), unit(5, 8, seed=5), unit(5, 11, 8, seed=6)
    scale = torch.tensor(20.0)
    inputs = LossInputs(
        image=images,
        logit_scale=scale,
        long_text=longs,
        short_text=shorts,
        region=regions,
        region_text=region_texts,
        logit_scale_region=scale,
        hard_candidates=candidates,
        logit_scale_hard=scale,
    )
    out = FGCLIPLoss()(inputs)
    assert LossWeights() == LossWeights(long=1.0, short=1.0, region=0.1, hard=0.5)
    expected = (
        global_contrastive_loss(images, longs, scale)
        + global_contrastive_loss(images, shorts, scale)
        + 0.1 * regional_contrastive_loss(regions, region_texts, scale)
        + 0.5 * hard_negative_loss(regions, candidates, scale)
    )
    torch.testing.assert_close(out.total, expected)
    assert set(out.terms) == {"long", "short", "region", "hard"}
    stage1 = FGCLIPLoss(LossWeights(region=0.0, hard=0.0))(inputs)
    assert set(stage1.terms) == {"long", "short"}


# ---------------------------------------------------------------- distributed equality
WORLD, LOCAL_BATCH, DIM = 2, 3, 8


def _features_model():
    torch.manual_seed(0)
    return torch.nn.Linear(DIM, DIM), torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def _inputs():
    generator = torch.Generator().manual_seed(7)
    n = WORLD * LOCAL_BATCH
    return torch.randn(n, DIM, generator=generator), torch.randn(n, DIM, generator=generator)


def _loss(layer, scale, images, texts):
    image_features = F.normalize(layer(images), dim=-1)
    text_features = F.normalize(texts @ layer.weight, dim=-1)
    return FGCLIPLoss()(
        LossInputs(
            image=image_features,
            logit_scale=scale.exp(),
            long_text=text_features,
            short_text=F.normalize(texts, dim=-1),
        )
    ).total


def _rank_worker(rank, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    layer, scale = _features_model()
    images, texts = _inputs()
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    loss = _loss(layer, scale, images[rows], texts[rows])
    loss.backward()
    # Data-parallel training averages gradients over ranks; do the same here.
    grads = [layer.weight.grad, layer.bias.grad, scale.grad]
    for grad in grads:
        dist.all_reduce(grad)
        grad /= WORLD
    torch.save({"loss": loss.detach(), "grads": grads}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_process_loss_equals_single_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    layer, scale = _features_model()
    images, texts = _inputs()
    loss = _loss(layer, scale, images, texts)
    loss.backward()
    expected_grads = [layer.weight.grad, layer.bias.grad, scale.grad]

    mean_rank_loss = sum(r["loss"] for r in ranks) / WORLD
    torch.testing.assert_close(mean_rank_loss, loss.detach(), rtol=1e-6, atol=1e-6)
    for rank in ranks:
        for got, expected in zip(rank["grads"], expected_grads):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
