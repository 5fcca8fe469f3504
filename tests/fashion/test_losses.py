"""Fashion-FINE losses: focal weighting by hand and against InfoNCE, hard-negative sampling, the matching
pairs, the composition loss, and 2-process (gloo) == 1 process on the concatenated batch."""

import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from fgclip.fashion.losses import (
    CompositionLossInputs,
    FashionFINELoss,
    FashionLossConfig,
    RetrievalLossInputs,
    composition_contrastive,
    focal_cross_entropy,
    matching_loss,
    retrieval_contrastive,
    sample_hard_negatives,
)
from fgclip.losses import global_contrastive_loss
from fgclip.tokenizer import FGCLIPTokenizer
from tests.fashion.conftest import tiny_fashion_model


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_focal_weight_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1])
    p = [math.exp(2) / (math.exp(2) + 1), math.exp(1) / (math.exp(1) + 1)]
    expected = sum(-0.25 * (1 - q) ** 2 * math.log(q) for q in p) / 2
    assert focal_cross_entropy(logits, targets, gamma=2.0, alpha=0.25).item() == pytest.approx(expected, rel=1e-6)


def test_without_focal_weight_the_contrastive_loss_is_infonce():
    images, texts, scale = unit(6, 8, seed=1), unit(6, 8, seed=2), torch.tensor(12.0)
    inputs = RetrievalLossInputs(image=images, text=texts, logit_scale=scale, groups=torch.arange(6))
    loss, *_ = retrieval_contrastive(inputs, gamma=0.0, alpha=1.0)
    torch.testing.assert_close(loss, global_contrastive_loss(images, texts, scale))
    focal, *_ = retrieval_contrastive(inputs, gamma=2.0, alpha=0.25)
    assert focal < 0.25 * loss  # (1 - p)^2 < 1 down-weights every row


def test_other_copies_of_a_product_take_no_probability():
    images, texts, scale = unit(3, 8, seed=3), unit(3, 8, seed=4), torch.tensor(10.0)
    texts[2] = texts[0]  # rows 0 and 2: two images of one product, same description
    grouped = RetrievalLossInputs(images, texts, scale, groups=torch.tensor([7, 8, 7]))
    loss, *_ = retrieval_contrastive(grouped, gamma=0.0, alpha=1.0)
    # row 0 image -> text: softmax over texts {0, 1} only; by hand for all six rows
    logits_i2t, logits_t2i = scale * images @ texts.T, scale * texts @ images.T
    keep = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    by_hand = (
        sum(
            -(row.masked_fill(~keep[i], -math.inf).log_softmax(0)[i])
            for logits in (logits_i2t, logits_t2i)
            for i, row in enumerate(logits)
        )
        / 6
    )
    torch.testing.assert_close(loss, by_hand)


def test_hard_negatives_follow_the_softmax_and_never_the_excluded():
    logits = torch.tensor([[0.0, math.log(3.0), 0.0, 5.0]])
    excluded = torch.tensor([[True, False, False, True]])  # own column 0 and a same-product column 3
    draws = [
        sample_hard_negatives(logits, excluded, torch.tensor([0]), step_seed=s, stream=0)[0].item() for s in range(2000)
    ]
    assert set(draws) == {1, 2}
    assert draws.count(1) / len(draws) == pytest.approx(0.75, abs=0.03)  # 3 / (3 + 1)
    again = [
        sample_hard_negatives(logits, excluded, torch.tensor([0]), step_seed=s, stream=0)[0].item() for s in range(50)
    ]
    assert again == draws[:50]


def test_a_row_draws_the_same_negative_whatever_the_batch_split():
    logits, excluded = torch.randn(6, 6), torch.eye(6, dtype=torch.bool)
    whole, _ = sample_hard_negatives(logits, excluded, torch.arange(6), step_seed=3, stream=1)
    half, _ = sample_hard_negatives(logits[3:], excluded[3:], torch.arange(3, 6), step_seed=3, stream=1)
    assert torch.equal(whole[3:], half)
    _, found = sample_hard_negatives(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), torch.tensor([0]), 0, 0)
    assert not found.item()


def test_matching_scores_positives_and_one_negative_each_way():
    batch, dim = 4, 8
    image_tokens, text_tokens = torch.randn(batch, 3, dim), torch.randn(batch, 5, dim)
    text_mask = torch.ones(batch, 5, dtype=torch.bool)
    seen = []

    def matcher(images, texts, mask):  # a real scorer: token means' dot product, recorded
        seen.append((images, texts))
        score = (images.mean(1) * texts.mean(1)).sum(-1)
        return torch.stack([-score, score], dim=1)

    groups = torch.tensor([0, 1, 1, 2])  # rows 1 and 2: one product
    inputs = RetrievalLossInputs(
        unit(batch, dim),
        unit(batch, dim, seed=1),
        torch.tensor(5.0),
        groups,
        image_tokens,
        text_tokens,
        text_mask,
        step_seed=11,
    )
    logits = torch.randn(batch, batch)
    loss = matching_loss(inputs, matcher, logits, logits.T, offset=0)
    images, texts = seen[0]
    assert images.shape[0] == texts.shape[0] == 3 * batch
    assert torch.equal(images[:batch], image_tokens) and torch.equal(texts[:batch], text_tokens)
    position = {tuple(t.flatten().tolist()[:3]): i for i, t in enumerate(image_tokens)}
    negative_images = [position[tuple(t.flatten().tolist()[:3])] for t in images[batch : 2 * batch]]
    assert all(groups[j] != groups[i] for i, j in enumerate(negative_images))
    scores = matcher(images, texts, None)
    labels = torch.tensor([1] * batch + [0] * 2 * batch)
    torch.testing.assert_close(loss, F.cross_entropy(scores, labels))


def test_composition_loss_uses_references_as_negatives_and_masks_copies_of_the_target():
    query, target, reference, scale = unit(3, 8, seed=1), unit(3, 8, seed=2), unit(3, 8, seed=3), torch.tensor(9.0)
    inputs = CompositionLossInputs(
        query, target, reference, scale, target_ids=torch.tensor([10, 11, 12]), reference_ids=torch.tensor([20, 10, 21])
    )  # row 1's reference is row 0's target
    loss = composition_contrastive(inputs, gamma=0.0, alpha=1.0)
    logits_q2i = scale * query @ torch.cat([target, reference]).T
    keep = torch.ones(3, 6, dtype=torch.bool)
    keep[0, 4] = False  # the same image as row 0's target, as row 1's reference
    q2i = sum(-row.masked_fill(~keep[i], -math.inf).log_softmax(0)[i] for i, row in enumerate(logits_q2i)) / 3
    i2q = F.cross_entropy(scale * target @ query.T, torch.arange(3))
    torch.testing.assert_close(loss, (q2i + i2q) / 2)


def test_the_combined_loss_with_a_real_model_and_the_published_weights():
    model = tiny_fashion_model()
    batch = FGCLIPTokenizer()(["a red dress", "a blue shirt with long sleeves", "green pants", "a black coat"])
    output = model(torch.randn(4, 3, 32, 32), batch["input_ids"], batch["attention_mask"])
    inputs = RetrievalLossInputs(
        output.image_embeds,
        output.text_embeds,
        output.logit_scale,
        torch.arange(4),
        output.image_tokens,
        output.text_tokens,
        output.text_mask,
        step_seed=1,
    )
    assert FashionLossConfig() == FashionLossConfig(
        contrastive_weight=1.0, matching_weight=1.0, focal_gamma=2.0, focal_alpha=0.25
    )
    result = FashionFINELoss()(inputs, matcher=model.match_logits)
    assert set(result.terms) == {"contrastive", "matching"}
    torch.testing.assert_close(result.total, result.terms["contrastive"] + result.terms["matching"])
    result.total.backward()
    assert model.local_pooling.hidden.weight.grad.abs().sum() > 0
    assert model.fusion.layers[0].multihead_attn.out_proj.weight.grad.abs().sum() > 0  # the head sees the image
    without = FashionFINELoss(FashionLossConfig(matching_weight=0.0))(inputs)
    assert set(without.terms) == {"contrastive"}


# ---------------------------------------------------------------- distributed equality
WORLD, LOCAL = 2, 3
TEXTS = [
    "a red dress",
    "a blue striped shirt with long sleeves and a round collar",
    "green pants",
    "a black coat",
    "a white t-shirt",
    "a yellow skirt with a floral print and a belt at the waist",
]


def _step_inputs():
    generator = torch.Generator().manual_seed(5)
    pixels = torch.randn(WORLD * LOCAL, 3, 32, 32, generator=generator)
    references = torch.randn(WORLD * LOCAL, 3, 32, 32, generator=generator)
    return pixels, references, torch.tensor([0, 1, 2, 2, 3, 4])  # rows 2, 3 (one on each rank): one product


def _losses(model, rows: slice):
    pixels, references, groups = _step_inputs()
    tokens = FGCLIPTokenizer()(TEXTS[rows])  # each rank pads to its own longest text
    output = model(pixels[rows], tokens["input_ids"], tokens["attention_mask"])
    retrieval = FashionFINELoss()(
        RetrievalLossInputs(
            output.image_embeds,
            output.text_embeds,
            output.logit_scale,
            groups[rows],
            output.image_tokens,
            output.text_tokens,
            output.text_mask,
            step_seed=123,
        ),
        matcher=model.match_logits,
    )
    composed = model(
        pixels[rows], tokens["input_ids"], tokens["attention_mask"], reference_pixel_values=references[rows]
    )
    ids = torch.arange(WORLD * LOCAL)
    composition = FashionFINELoss(FashionLossConfig(focal_gamma=0.0, focal_alpha=1.0))(
        CompositionLossInputs(
            composed.query_embeds,
            composed.image_embeds,
            composed.reference_embeds,
            composed.logit_scale,
            ids[rows],
            ids[rows] + 100,
        )
    )
    return retrieval.total + composition.total, {
        k: v.detach() for k, v in {**retrieval.terms, **composition.terms}.items()
    }


def _trained_model():
    model = tiny_fashion_model(seed=1)
    with torch.no_grad():  # give the zero-initialised fusion branches weights, so their gradients are tested too
        for parameter in model.fusion.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _rank_worker(rank, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = _trained_model()
    total, terms = _losses(model, slice(rank * LOCAL, (rank + 1) * LOCAL))
    total.backward()
    grads = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            grads[name] = parameter.grad / WORLD
    torch.save({"terms": terms, "grads": grads}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    model = _trained_model()
    total, terms = _losses(model, slice(0, WORLD * LOCAL))
    total.backward()
    for name, value in terms.items():
        torch.testing.assert_close(sum(r["terms"][name] for r in ranks) / WORLD, value, rtol=1e-5, atol=1e-6)
    expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert set(ranks[0]["grads"]) == set(expected) and "matching_head.weight" in expected
    for name, grad in expected.items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
