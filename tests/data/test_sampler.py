"""The seeded distributed sampler: deterministic, disjoint across ranks, equal lengths, resumable; each index
says whether the run sees it for the first time."""

import pytest

from fgclip.data.sampler import EpochBatchSampler, sample_seed


def flatten(batches):
    return [index for batch in batches for index, _, _ in batch]


def test_same_seed_same_order_and_epochs_differ():
    a, b = EpochBatchSampler(50, 4, seed=3), EpochBatchSampler(50, 4, seed=3)
    assert list(a) == list(b)
    first = flatten(a)
    a.set_epoch(1)
    assert flatten(a) != first
    assert sorted(first) == sorted(set(first)) and len(first) == 48  # 12 whole batches, no repeats


def test_ranks_are_disjoint_and_equal():
    ranks = [EpochBatchSampler(23, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    seen = [set(flatten(sampler)) for sampler in ranks]
    assert not seen[0] & seen[1]


def test_resume_offset_continues_the_same_order():
    full = list(EpochBatchSampler(40, 4, seed=9))
    resumed = EpochBatchSampler(40, 4, seed=9)
    resumed.set_epoch(0, start_batch=6)
    assert list(resumed) == full[6:]


def test_sample_seeds_depend_on_seed_epoch_and_index():
    assert sample_seed(1, 0, 5) == sample_seed(1, 0, 5)
    assert len({sample_seed(1, 0, 5), sample_seed(1, 1, 5), sample_seed(2, 0, 5), sample_seed(1, 0, 6)}) == 4


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="too few"):
        EpochBatchSampler(3, 2, seed=0, rank=0, world_size=2)


def first_sightings(samplers, epochs):
    seen = []
    for epoch in range(epochs):
        for sampler in samplers:
            sampler.set_epoch(epoch)
            seen += [index for batch in sampler for index, _, first in batch if first]
    return seen


def test_every_record_is_a_first_sighting_exactly_once_over_epochs_and_ranks():
    ranks = [EpochBatchSampler(23, 3, seed=5, rank=r, world_size=2) for r in range(2)]  # 18 of 23 used per epoch
    once = first_sightings(ranks, 1)
    assert len(once) == len(set(once)) == 18
    many = first_sightings([EpochBatchSampler(23, 3, seed=5, rank=r, world_size=2) for r in range(2)], 6)
    assert len(many) == len(set(many))  # never counted twice
    assert set(many) > set(once) and len(many) == 23  # the records epoch 0 cut off are counted later


def test_first_sightings_resume_mid_run():
    full = EpochBatchSampler(23, 3, seed=5)
    full.set_epoch(2)
    resumed = EpochBatchSampler(23, 3, seed=5)  # a new process: nothing cached
    resumed.set_epoch(2, start_batch=1)
    assert list(resumed) == list(full)[1:]
