"""The one sampler interface every data kind uses: epochs, mid-epoch skip, and sharding.

A sampler yields the keys of one epoch (what its dataset's ``__getitem__`` takes). The keys of
an epoch are a pure function of (seed, epoch), so a run is reproducible with any number of
worker processes, resumes mid-epoch exactly (``set_epoch(epoch, skip=done)``), and is split
between distributed processes by :meth:`EpochSampler.shard` (each takes every world-th key).
Every process gets the same number of keys per epoch, so that all take the same number of
steps: when the epoch's length is not a multiple of the world size, its first keys are used
again to fill the last round (as ``torch.utils.data.DistributedSampler`` does).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[Any]):
    def __init__(self, length: int, *, seed: int) -> None:
        self.length, self.seed = length, seed
        self.epoch = 0
        self.skip = 0
        self.rank, self.world = 0, 1

    @abstractmethod
    def epoch_keys(self, epoch: int) -> list[Any]:
        """All keys of ``epoch``, in order, before sharding and skipping."""

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start ``epoch``, leaving out the first ``skip`` keys of this process's share."""
        self.epoch, self.skip = epoch, skip

    def shard(self, rank: int, world: int) -> None:
        """Each of ``world`` processes takes every world-th key (distributed training)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        self.rank, self.world = rank, world

    @property
    def share(self) -> int:
        """Keys per process per epoch (the epoch's length, padded to a multiple of the world size)."""
        return math.ceil(self.length / self.world)

    def __len__(self) -> int:
        return max(0, self.share - self.skip)

    def __iter__(self) -> Iterator[Any]:
        keys = self.epoch_keys(self.epoch)
        pad = self.share * self.world - len(keys)
        if pad and keys:
            keys = keys + [keys[i % len(keys)] for i in range(pad)]
        return iter(keys[self.rank :: self.world][self.skip :])


class ShuffledSampler(EpochSampler):
    """(index, aug_seed) keys: every item once per epoch, in a random order (or in order)."""

    def __init__(self, length: int, *, seed: int, serial: bool = False) -> None:
        super().__init__(length, seed=seed)
        self.serial = serial

    def epoch_keys(self, epoch: int) -> list[tuple[int, int]]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        order = torch.arange(self.length) if self.serial else torch.randperm(self.length, generator=gen)
        seeds = torch.randint(0, 2**62, (self.length,), generator=gen)
        return [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]
