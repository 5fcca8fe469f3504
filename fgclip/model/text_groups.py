"""Length groups for encoding many texts of mixed lengths with little padding.

A stage-2 step encodes thousands of short texts (region captions, hard negatives) whose lengths range
from 4 to 30 tokens; padded to the longest of the batch, most of the text tower's work is padding.
Split by length into a few groups, each padded only to its own longest, the work comes close to the
texts' own lengths. The split is exact: under CLIP's causal mask and first-EOS pooling a text's
embedding does not depend on how far it is padded.
"""

from __future__ import annotations

from collections import Counter

import torch


def optimal_length_cuts(lengths: list[int], max_groups: int) -> list[int]:
    """Upper length bounds of at most `max_groups` groups that minimise the padded tokens.

    Groups are contiguous ranges of the sorted lengths; a group costs (its size) x (its longest). Solved
    exactly by dynamic programming over the distinct lengths (few: at most the path's 77 or 248).
    """
    if max_groups < 1:
        raise ValueError("max_groups must be at least 1")
    counts = Counter(lengths)
    values = sorted(counts)
    if len(values) <= max_groups:
        return values
    prefix = [0]
    for value in values:
        prefix.append(prefix[-1] + counts[value])
    size = len(values)
    infinity = float("inf")
    # best[g][j]: least padded tokens for the first j distinct lengths in g groups; cut[g][j]: start of the last
    best = [[infinity] * (size + 1) for _ in range(max_groups + 1)]
    cut = [[0] * (size + 1) for _ in range(max_groups + 1)]
    best[0][0] = 0
    for groups in range(1, max_groups + 1):
        for end in range(1, size + 1):
            for start in range(groups - 1, end):
                cost = best[groups - 1][start] + values[end - 1] * (prefix[end] - prefix[start])
                if cost < best[groups][end]:
                    best[groups][end], cut[groups][end] = cost, start
    groups = min(range(1, max_groups + 1), key=lambda g: best[g][size])
    bounds, end = [], size
    while groups > 0:
        bounds.append(values[end - 1])
        end, groups = cut[groups][end], groups - 1
    return sorted(bounds)


def length_groups(attention_mask: torch.Tensor, max_groups: int) -> list[tuple[torch.Tensor, int]]:
    """`(rows, width)` per group: the rows whose length (mask sum) falls in the group, and the group's
    longest length, for `(N, L)` right-padded texts. Every row is in exactly one group."""
    lengths = attention_mask.sum(dim=1)
    bounds = optimal_length_cuts(lengths.tolist(), max_groups)
    groups, lower = [], -1
    for upper in bounds:
        rows = torch.nonzero((lengths > lower) & (lengths <= upper)).flatten()
        if rows.numel():
            groups.append((rows, int(upper)))
        lower = upper
    return groups
