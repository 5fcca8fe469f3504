"""fgclip.metrics: the one region top-1 rule (ties are hits, as in the public FG-OVD evaluation of FG-CLIP)."""

from __future__ import annotations

import pytest
import torch

from fgclip.metrics import TIE_TOLERANCE, candidate_scores, region_chance, region_ties, region_top1_hits


def public_fgovd_hit(scores: torch.Tensor) -> bool:
    """The public rule as FG-CLIP's fgovd_eval.py writes it: softmax at scale 100, hit when the maximum
    equals the value at index 0."""
    similarity = (100.0 * scores).softmax(dim=-1)
    return torch.equal(torch.max(similarity), similarity[0])


def test_a_tie_is_a_hit_a_higher_negative_a_miss():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5],  # positive highest
            [0.5, 0.5, 0.2],  # a negative ties: a hit
            [0.3, 0.4, 0.1],  # a negative above: a miss
            [0.7, float("-inf"), float("-inf")],
        ]
    )  # no negative present: a hit
    assert region_top1_hits(scores).tolist() == [True, True, False, True]
    assert region_ties(scores).tolist() == [False, True, False, False]


def test_the_rule_is_the_public_fgovd_rule_and_argmax_agrees():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 11, generator=generator).clamp(-1, 1)
    scores[::7, 3] = scores[::7, 0]  # exact ties
    ours = region_top1_hits(scores).tolist()
    assert ours == [public_fgovd_hit(row) for row in scores]
    assert ours == (scores.argmax(dim=1) == 0).tolist()  # torch's argmax returns the first maximum
    assert sum(ours) > 28  # the ties are among the hits


def test_last_bit_differences_are_ties():
    positive = torch.tensor(0.3)
    scores = torch.stack([positive, torch.nextafter(positive, torch.tensor(1.0))])[None]
    assert region_top1_hits(scores).item() and region_ties(scores).item()
    assert not region_top1_hits(torch.tensor([[0.3, 0.3 + 10 * TIE_TOLERANCE]])).item()


def test_candidate_scores_pads_with_minus_infinity_and_keeps_column_order():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    scores = candidate_scores(queries, candidates, [[0, 1, 2], [2]])
    assert scores.tolist() == [[1.0, 0.0, pytest.approx(0.6)], [pytest.approx(0.8), float("-inf"), float("-inf")]]
    assert region_top1_hits(scores).tolist() == [True, True]


def test_chance_is_the_mean_of_one_over_the_candidates():
    assert region_chance([10, 10]) == pytest.approx(1 / 11)
    assert region_chance([1, 3]) == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_bad_scores_are_errors():
    with pytest.raises(ValueError, match="NaN"):
        region_top1_hits(torch.tensor([[float("nan"), 0.1]]))
    with pytest.raises(ValueError, match="regions, 1 \\+ negatives"):
        region_top1_hits(torch.zeros(3))
    with pytest.raises(ValueError, match="2 candidate lists for 1 queries"):
        candidate_scores(torch.zeros(1, 2), torch.zeros(2, 2), [[0], [1]])
