"""Region top-1, FG-OVD's measure of fine-grained understanding: the one scoring rule, for the trainer's
held-out evaluation and for `eval.fgovd` alike (torch only).

A region is scored against its candidate captions: its positive caption and its hard negatives. It is a hit
when no negative scores above the positive. A tie is a hit: that is the rule of the public FG-OVD evaluation
of FG-CLIP (`fgclip/eval/fgovd_eval.py` of the official release takes the softmax over [positive,
negatives] and counts a hit when `torch.equal(max, value at index 0)`), so our numbers compare with the
published ones. "Equal" means within `TIE_TOLERANCE`: identical texts (e.g. two negatives cut to the same 77
tokens) can get scores that differ in the last bit depending on where they sit in a matrix product, and a
tie must not depend on that. The consequence to keep in mind: a model that gives every caption the same
score (a collapsed text tower) scores 1.0, so read top-1 beside its chance level and `region_ties`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

TIE_TOLERANCE = 1e-6  # cosine similarities; float32 rounding of a dot product of unit vectors is ~1e-7


def candidate_scores(queries: torch.Tensor, candidates: torch.Tensor, columns: Sequence[Sequence[int]]) -> torch.Tensor:
    """`(Q, W)` similarity of each query to its own candidates, padded with `-inf`.

    queries: `(Q, D)`; candidates: `(C, D)`; columns[q]: the candidate rows of query q (lists may differ in
    length; W is the longest). Column order is kept: put a region's positive first.
    """
    if len(columns) != len(queries):
        raise ValueError(f"{len(columns)} candidate lists for {len(queries)} queries")
    width = max((len(row) for row in columns), default=0)
    index = torch.full((len(columns), width), -1, dtype=torch.long)
    for row, ids in enumerate(columns):
        index[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    scores = torch.einsum("qd,qkd->qk", queries.float(), candidates.float()[index.clamp(min=0)])
    return scores.masked_fill(index < 0, float("-inf"))


def region_top1_hits(scores: torch.Tensor) -> torch.Tensor:
    """`(Q,)` bool: the positive (column 0) scores at least as high as every negative, ties within
    `TIE_TOLERANCE` counting as hits (the public FG-OVD rule; see the module docstring).

    scores: `(Q, 1 + K)`, the positive in column 0 and the negatives after it; `-inf` marks an absent
    candidate (a region with fewer than K negatives). A NaN score is an error, never a silent miss.
    """
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (regions, 1 + negatives), got {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores hold NaN")
    scores = scores.float()
    best = scores.max(dim=1).values
    return scores[:, 0] >= best - TIE_TOLERANCE


def region_chance(num_negatives: Sequence[int]) -> float:
    """The top-1 a model guessing at random gets: the mean of 1 / (1 + K) over the regions (1/11 with 10)."""
    if not num_negatives:
        raise ValueError("no regions")
    return sum(1 / (1 + count) for count in num_negatives) / len(num_negatives)


def region_ties(scores: torch.Tensor) -> torch.Tensor:
    """`(Q,)` bool: a negative ties with the positive (within `TIE_TOLERANCE`); these regions count as hits."""
    scores = scores.float()
    negatives = scores[:, 1:]
    if negatives.shape[1] == 0:
        return torch.zeros(len(scores), dtype=torch.bool)
    return ((negatives - scores[:, :1]).abs() <= TIE_TOLERANCE).any(dim=1)
