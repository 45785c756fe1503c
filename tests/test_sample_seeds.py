"""wssis_d2.data.sample_seeds in one process (the 2-process equality is in tests/test_distributed.py)."""
import random

import numpy as np
import torch

from detectron2.data.samplers import TrainingSampler

from wssis_d2.data.sample_seeds import SampleSeededDataset, StreamPositionSampler, seeded_rngs


def test_seeded_rngs_repeat_draws_and_restore_the_global_state():
    np.random.seed(3), torch.manual_seed(3), random.seed(3)
    before = np.random.rand(), float(torch.rand(())), random.random()
    np.random.seed(3), torch.manual_seed(3), random.seed(3)
    with seeded_rngs(0, 5, 2):
        a = np.random.rand(), float(torch.rand(())), random.random()
    assert (np.random.rand(), float(torch.rand(())), random.random()) == before  # as if nothing was drawn
    with seeded_rngs(0, 5, 2):
        assert (np.random.rand(), float(torch.rand(())), random.random()) == a
    with seeded_rngs(0, 6, 2):
        assert np.random.rand() != a[0]


def test_stream_positions():
    one = StreamPositionSampler(TrainingSampler(5, seed=1))  # this process: rank 0 of 1
    assert [p for (_, p), _ in zip(one, range(7))] == list(range(7))
    # rank 1 of 2 gets the stream's elements 1, 3, 5 (detectron2's samplers deal them so)
    assert list(StreamPositionSampler([4, 2, 0], rank=1, world_size=2)) == [(4, 1), (2, 3), (0, 5)]


def test_a_skipped_sample_is_replaced_by_a_seeded_draw():
    dataset = SampleSeededDataset([{"i": i} for i in range(4)], lambda d: None if d["i"] == 1 else d["i"], seed=0)
    got = dataset[(1, 7)]
    assert got != 1 and got == dataset[(1, 7)]
    assert dataset[(2, 7)] == 2
