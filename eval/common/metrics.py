"""Ranking metrics shared by the benchmarks: rank of the best positive, top-k accuracy, recall@K.

Tie rule (one rule everywhere): a negative that scores *equal to* the best positive ranks ahead of it,
so ties count as misses. A model that maps everything to one vector therefore scores 0, not 1/N or 1.
"Equal" means within `TIE_TOLERANCE`: identical vectors can get scores that differ in the last bit
depending on where they sit in a matrix product, and a tie must not depend on that.
Positives never compete with each other: with several correct candidates (several captions of an
image, duplicated captions, several images of a product) a query is a hit at K if any positive ranks
within the top K.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

TIE_TOLERANCE = 1e-6  # cosine similarities; float32 rounding of a dot product of unit vectors is ~1e-7


def rank_of_best_positive(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """`(Q,)` 0-based ranks: how many negatives score >= the best positive of each query.

    scores: `(Q, C)` similarity of each query to each candidate (`-inf` marks an absent candidate).
    positives: `(Q, C)` bool, at least one True per row.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} differ in shape")
    if not positives.any(dim=1).all():
        raise ValueError("every query needs at least one positive candidate")
    if torch.isnan(scores).any():
        raise ValueError("scores hold NaN")
    scores = scores.float()
    best_positive = scores.masked_fill(~positives, float("-inf")).max(dim=1, keepdim=True).values
    return ((scores >= best_positive - TIE_TOLERANCE) & ~positives).sum(dim=1)


def recall_at_k(ranks: torch.Tensor, ks: Iterable[int]) -> dict[int, float]:
    """Share of queries whose best positive has rank < k, for each k."""
    if ranks.numel() == 0:
        raise ValueError("no queries to score")
    return {int(k): int((ranks < k).sum()) / ranks.numel() for k in ks}  # exact fractions, not fp32 means


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Classification top-k accuracy of `(N, C)` scores against `(N,)` class indices (ties are misses)."""
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(targets)), targets] = True
    return recall_at_k(rank_of_best_positive(scores, positives), ks)


def retrieval_ranks(
    queries: torch.Tensor, candidates: torch.Tensor, positive_sets: Sequence[Sequence[int]], chunk_size: int = 1024
) -> torch.Tensor:
    """`(Q,)` ranks of each query's best positive among all candidates, by cosine similarity.

    queries `(Q, D)` and candidates `(C, D)` are L2-normalised; `positive_sets[q]` lists the candidate
    indices that are correct for query q. Scores are computed `chunk_size` queries at a time so that
    25k x 5k retrieval never holds the whole matrix.
    """
    if len(positive_sets) != len(queries):
        raise ValueError("one positive set per query")
    ranks = []
    for start in range(0, len(queries), chunk_size):
        scores = queries[start : start + chunk_size].float() @ candidates.float().T
        positives = torch.zeros_like(scores, dtype=torch.bool)
        for row, positive in enumerate(positive_sets[start : start + chunk_size]):
            positives[row, list(positive)] = True
        ranks.append(rank_of_best_positive(scores, positives))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def recall_keys(prefix: str, recalls: dict[int, float]) -> dict[str, float]:
    """{'i2t_r1': ..., 'i2t_r5': ...} style names for results.json."""
    return {f"{prefix}_r{k}": value for k, value in recalls.items()}


def curve_ks(num_candidates: int, ks: Iterable[int] = (1, 2, 5, 10, 20, 50, 100)) -> list[int]:
    """The K values of a recall@K curve that make sense for this many candidates (at least K=1)."""
    return [k for k in ks if k <= num_candidates] or [1]


def classification_report(
    scores: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str], ks: Iterable[int] = (1, 5)
) -> tuple[dict[str, float], dict[str, dict]]:
    """Top-k accuracies (`top1`, `top5`, ...), the mean of per-class top-1, and per-class results.

    scores: `(N, C)`; labels: `(N,)` class indices. Classes without items are left out of the mean.
    """
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(labels)), labels] = True
    ranks = rank_of_best_positive(scores, positives)
    metrics = {f"top{k}": value for k, value in recall_at_k(ranks, ks).items()}
    per_class = {}
    for index, name in enumerate(classnames):
        mask = labels == index
        if mask.any():
            per_class[name] = {"count": int(mask.sum()), "top1": float((ranks[mask] == 0).float().mean())}
    metrics["mean_class_top1"] = sum(v["top1"] for v in per_class.values()) / len(per_class)
    return metrics, per_class
