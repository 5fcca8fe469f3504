"""The one place that knows how FG-CLIP stretches the 77-slot text position table to 248 slots.

Rule (Long-CLIP, reused by FG-CLIP): slots ``0..keep-1`` are copied; every gap between two
consecutive original slots from ``keep`` on is filled 4x by linear interpolation (weights
1, 3/4, 1/2, 1/4); the last 4 slots extrapolate from the last two original slots. With 77 slots
and keep=20 this gives ``20 + 4 * 56 + 4 = 248 = 4 * 77 - 3 * 20`` slots.
"""

from __future__ import annotations

import torch

STRETCH = 4


def stretched_length(short_length: int, keep: int) -> int:
    """Number of slots the stretched table has: ``4 * short_length - 3 * keep``."""
    return STRETCH * short_length - (STRETCH - 1) * keep


def stretch_position_table(table: torch.Tensor, keep: int = 20) -> torch.Tensor:
    """Stretch a ``(L, D)`` position table to ``(4L - 3keep, D)`` slots.

    Computed in at least float32 (so bf16 tables interpolate exactly) and returned in the input dtype.
    """
    if table.dim() != 2:
        raise ValueError(f"position table must be 2-D (slots, dim), got shape {tuple(table.shape)}")
    length = table.shape[0]
    if not 0 < keep < length - 1:
        raise ValueError(f"keep={keep} must lie in (0, {length - 1}) for a table of {length} slots")
    compute_dtype = torch.promote_types(table.dtype, torch.float32)
    original = table.to(compute_dtype)
    weights = torch.arange(STRETCH, dtype=compute_dtype, device=table.device) / STRETCH  # 0, 1/4, 1/2, 3/4
    left, right = original[keep:-1], original[keep + 1 :]
    middle = left[:, None] * (1 - weights)[None, :, None] + right[:, None] * weights[None, :, None]
    step = original[-1] - original[-2]
    tail = original[-1][None] + weights[:, None] * step[None]
    stretched = torch.cat([original[:keep], middle.reshape(-1, table.shape[1]), tail])
    return stretched.to(table.dtype)
