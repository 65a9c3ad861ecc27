"""A resumable, rank-sharded, endless stream of ``(index, seed)`` pairs, and the dataset wrapper that applies
the per-sample seed.

Why: exact resume. The training stream is a function of (seed, epoch, position) only -- each epoch is a fresh
permutation from ``seed + epoch``, sharded over ranks -- so a resumed run restarts it at the sample where the
checkpoint left off. Each sample's random augmentation is seeded from its place in the stream, not from
whichever worker process happens to load it, so resumed and uninterrupted runs see identical crops and flips
whatever the number of data workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableSampler", "SeededSamples"]


class ResumableSampler(Sampler):
    """Yields ``(dataset index, sample seed)`` forever, starting ``start`` samples into this rank's stream.

    Every epoch permutes all indices with ``torch.Generator().manual_seed(seed + epoch)``, pads to a multiple
    of ``world_size`` by repeating the first indices (as ``DistributedSampler`` does), and gives rank ``r`` the
    positions ``r, r + world_size, ...``.
    """

    def __init__(self, dataset_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if dataset_size < 1:
            raise ValueError("the training dataset is empty")
        self.size, self.seed, self.rank, self.world_size, self.start = dataset_size, seed, rank, world_size, start
        self.per_rank = -(-dataset_size // world_size)  # ceil: samples per rank per epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            order += order[: self.per_rank * self.world_size - self.size]
            shard = order[self.rank :: self.world_size]
            for position in range(offset, self.per_rank):
                # A distinct, reproducible seed per (run seed, epoch, rank, position).
                entropy = [self.seed, epoch, self.rank, position]
                sample_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
                yield shard[position], sample_seed
            epoch, offset = epoch + 1, 0


class SeededSamples(Dataset):
    """Wraps a dataset so that ``dataset[(index, seed)]`` runs its transforms under ``torch.manual_seed(seed)``
    (inside ``torch.random.fork_rng``, leaving the caller's random state untouched)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
