"""Training augmentation draws that do not depend on the number of processes (``DATALOADER.WSSIS_SAMPLE_SEEDS``).

detectron2 seeds each process with ``SEED + rank`` and its mappers draw from the global RNGs (numpy for
``detectron2.data.transforms``, torch for MaskRefineNet's box scales and flips), in the order that process
loads its images. Its ``TrainingSampler`` does deal the positions of one shared shuffled stream: with W
processes, rank r maps the images at positions r, r + W, r + 2W, ... So one process and W processes train
on the same images, but each image's random draws (flip, scale, ...) depend on which process loads it and
on what that process loaded before.

Here every image of the stream is mapped under RNGs seeded from (seed, position in the stream, dataset
index), and the global RNG states are restored afterwards: the draws of the sample at position p are the
same whatever W, whichever dataloader worker maps it, and whatever was drawn before. The price: they are
not the draws of detectron2's per-process stream, so a run with the switch on differs from one with it off
(also with one process).
"""
import logging
import random
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata

from detectron2.data import DatasetFromList
from detectron2.data.build import _train_loader_from_config, build_batch_data_loader
from detectron2.utils import comm

__all__ = ["StreamPositionSampler", "SampleSeededDataset", "seeded_rngs", "build_sample_seeded_train_loader"]

logger = logging.getLogger(__name__)


class StreamPositionSampler(torchdata.Sampler):
    """Pairs each index of a detectron2 training sampler with its position in the shared stream.

    detectron2's training samplers (``TrainingSampler``, ``RepeatFactorTrainingSampler``,
    ``RandomSubsetTrainingSampler``) give rank r the elements r, r + W, r + 2W, ... of one infinite stream
    that every process generates from a shared seed; the k-th index this process yields sits at position
    ``rank + k * W`` of it.
    """

    def __init__(self, sampler: torchdata.Sampler, rank: int = None, world_size: int = None):
        self._sampler = sampler
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world = comm.get_world_size() if world_size is None else int(world_size)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for k, index in enumerate(self._sampler):
            yield int(index), self._rank + k * self._world


@contextmanager
def seeded_rngs(*key: int):
    """numpy's, torch's (CPU) and Python's global RNGs seeded from ``key`` (ints) inside the block, and put
    back as they were after it."""
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2)  # two uint32
    np_state, torch_state, py_state = np.random.get_state(), torch.get_rng_state(), random.getstate()
    np.random.seed(int(words[0]))
    torch.default_generator.manual_seed((int(words[0]) << 32) | int(words[1]))  # CPU only, never CUDA
    random.seed(int(words[1]))
    try:
        yield
    finally:
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        random.setstate(py_state)


class SampleSeededDataset(torchdata.Dataset):
    """Map-style dataset over (dataset index, stream position) pairs (:class:`StreamPositionSampler`): the
    mapper runs under :func:`seeded_rngs` of (seed, position, index).

    A mapper that returns None (an image skipped, ``DATALOADER.WSSIS_SKIP_BAD_IMAGES``) gets another index,
    drawn from the same seeded RNGs (detectron2's ``MapDataset`` draws it from a per-process RNG).
    """

    def __init__(self, dicts: Sequence[dict], mapper: Callable[[dict], dict], seed: int):
        self._dicts = DatasetFromList(list(dicts), copy=False)  # serialised, as detectron2's loader keeps them
        self._mapper = mapper
        self._seed = int(seed)

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, key: Tuple[int, int]) -> dict:
        index, position = key
        with seeded_rngs(self._seed, position, index):
            for retry in range(len(self._dicts) + 3):
                data = self._mapper(self._dicts[index])
                if data is not None:
                    return data
                index = random.randrange(len(self._dicts))
                if retry == 2:
                    logger.warning(f"Failed to map 3 samples in a row at stream position {position}")
        raise RuntimeError(f"Could not map any sample at stream position {position}")


def build_sample_seeded_train_loader(cfg, mapper: Callable[[dict], dict], dicts: Sequence[dict]):
    """detectron2's batched training loader (its sampler of ``DATALOADER.SAMPLER_TRAIN``, batch size per
    process, aspect-ratio grouping, workers) whose samples are mapped by :class:`SampleSeededDataset`.

    The seed is ``cfg.SEED``, or one shared random seed when it is negative.
    """
    # detectron2 0.6's own sampler choice (private helper; build_detection_train_loader's from_config).
    args = _train_loader_from_config(cfg, mapper=mapper, dataset=dicts)
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    dataset = SampleSeededDataset(dicts, mapper, seed)
    return build_batch_data_loader(dataset, StreamPositionSampler(args["sampler"]), args["total_batch_size"],
                                   aspect_ratio_grouping=args["aspect_ratio_grouping"],
                                   num_workers=args["num_workers"])
