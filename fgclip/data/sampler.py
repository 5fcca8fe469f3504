"""A seeded, distributed, resumable batch sampler.

Epoch `e` is one permutation of the dataset drawn from `(seed, e)`; rank `r` of `W` takes every W-th
index of it, cut to whole batches so every rank runs the same number of steps (the global loss
gathers equal-sized batches). Each index travels with its own sample seed, derived from
`(seed, epoch, index)`, so random choices made while loading (which regions, which region caption)
do not depend on worker processes or on where a resumed run started.

Each index also says whether this is the first time the run sees it (every index of epoch 0; later, only
those that every earlier epoch cut off with its last partial batch), so records are counted once, however
many epochs a run has.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class EpochBatchSampler:
    """Yields lists of `(index, sample_seed, first_sighting)`; `set_epoch(epoch, start_batch)` picks the position."""

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_batch = 0, 0
        self._unseen: dict[int, np.ndarray] = {}  # epoch -> sorted indices no earlier epoch used
        if len(self) == 0:
            raise ValueError(
                f"{num_samples} samples are too few for one batch of {batch_size} on each of {world_size} ranks"
            )

    def __len__(self) -> int:
        """Batches per epoch on each rank (the same on every rank)."""
        return self.num_samples // self.world_size // self.batch_size

    @property
    def used_per_epoch(self) -> int:
        """Indices an epoch uses over all ranks (the rest of its permutation is cut off)."""
        return len(self) * self.batch_size * self.world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start batch {start_batch} is outside the epoch's {len(self)} batches")
        self.epoch, self.start_batch = epoch, start_batch

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        generator = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(self.num_samples, generator=generator).numpy()

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for `epoch`, in order, cut to whole batches."""
        mine = self._order(epoch)[self.rank :: self.world_size]
        return mine[: len(self) * self.batch_size]

    def unseen_before(self, epoch: int) -> np.ndarray | None:
        """Sorted indices that no epoch before `epoch` used; None for epoch 0 (all of them)."""
        if epoch == 0:
            return None
        if epoch not in self._unseen:
            earlier = self.unseen_before(epoch - 1)
            order = self._order(epoch - 1)
            if earlier is None:
                unseen = np.sort(order[self.used_per_epoch :])
            else:
                unseen = earlier[~np.isin(earlier, order[: self.used_per_epoch])] if len(earlier) else earlier
            self._unseen = {epoch - 1: earlier, epoch: unseen} if earlier is not None else {epoch: unseen}
        return self._unseen[epoch]

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        indices = self.epoch_indices(self.epoch)
        unseen = self.unseen_before(self.epoch)
        first = np.ones(len(indices), dtype=bool) if unseen is None else np.isin(indices, unseen)
        for batch in range(self.start_batch, len(self)):
            window = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            yield [
                (int(index), sample_seed(self.seed, self.epoch, int(index)), bool(seen_first))
                for index, seen_first in zip(indices[window], first[window])
            ]
