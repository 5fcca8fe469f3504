"""Ranking metrics against hand-computed cases: ties, several positives, duplicated captions."""

from __future__ import annotations

import pytest
import torch

from eval.common.metrics import (
    classification_report,
    curve_ks,
    rank_of_best_positive,
    recall_at_k,
    retrieval_ranks,
    topk_accuracy,
)


def test_rank_counts_negatives_at_or_above_the_best_positive():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5],  # positive first and highest: rank 0
            [0.2, 0.9, 0.5],  # two negatives above: rank 2
            [0.5, 0.5, 0.1],
        ]
    )  # a tie with a negative: rank 1 (a miss at K=1)
    positives = torch.tensor([[True, False, False]] * 3)
    assert rank_of_best_positive(scores, positives).tolist() == [0, 2, 1]


def test_positives_do_not_compete_and_the_best_one_counts():
    scores = torch.tensor([[0.3, 0.8, 0.8, 0.5]])  # candidates 1 and 2 are both correct (duplicated caption)
    positives = torch.tensor([[False, True, True, False]])
    assert rank_of_best_positive(scores, positives).tolist() == [0]
    # only the weaker positive counts if the stronger is not a positive
    positives = torch.tensor([[False, False, False, True]])
    assert rank_of_best_positive(scores, positives).tolist() == [2]  # 0.8 and 0.8 are above 0.5


def test_absent_candidates_never_beat_a_positive():
    scores = torch.tensor([[0.1, float("-inf"), float("-inf")]])
    assert rank_of_best_positive(scores, torch.tensor([[True, False, False]])).tolist() == [0]


def test_rank_rejects_queries_without_positive_and_nan():
    with pytest.raises(ValueError, match="positive"):
        rank_of_best_positive(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        rank_of_best_positive(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[True, False]]))


def test_a_constant_model_scores_zero_not_chance():
    scores = torch.zeros(4, 5)
    assert topk_accuracy(scores, torch.tensor([0, 1, 2, 3]), ks=(1, 5)) == {1: 0.0, 5: 1.0}


def test_recall_and_topk_by_hand():
    ranks = torch.tensor([0, 1, 4, 9, 10])
    assert recall_at_k(ranks, (1, 5, 10)) == {1: 0.2, 5: 0.6, 10: 0.8}
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.3, 0.6]])
    assert topk_accuracy(scores, torch.tensor([1, 2]), ks=(1, 2)) == {1: 0.5, 2: 1.0}


def test_retrieval_ranks_several_captions_per_image_and_chunking():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    # captions 0,1 belong to image 0, caption 2 to image 1, captions 3,4 to image 2; caption 4 is image 0's twin
    captions = torch.stack([images[0], -images[0], images[1], -images[2], images[0]])
    positives = [[0, 1], [2], [3, 4]]
    ranks = retrieval_ranks(images, captions, positives)
    assert ranks[0] == 1  # caption 4 (a negative for image 0) ties with caption 0 -> counted ahead
    assert ranks[1] == 0
    chunked = retrieval_ranks(images, captions, positives, chunk_size=1)
    assert torch.equal(ranks, chunked)


def test_classification_report_per_class_and_mean():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 1, 1])
    metrics, per_class = classification_report(scores, labels, ["cat", "dog"], ks=(1, 2))
    assert metrics["top1"] == 0.75 and metrics["top2"] == 1.0
    assert per_class == {"cat": {"count": 2, "top1": 1.0}, "dog": {"count": 2, "top1": 0.5}}
    assert metrics["mean_class_top1"] == 0.75


def test_curve_ks_cap_at_the_candidate_count():
    assert curve_ks(7) == [1, 2, 5]
    assert curve_ks(0) == [1]
