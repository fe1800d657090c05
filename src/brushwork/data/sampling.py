"""The one sampler interface every data kind uses: epochs, mid-epoch skip, and sharding.

A sampler yields the keys of one epoch (what its dataset's ``__getitem__`` takes). The keys of
an epoch are a pure function of (seed, epoch), so a run is reproducible with any number of
worker processes, resumes mid-epoch exactly (``set_epoch(epoch, skip=done)``), and is split
between distributed processes by :meth:`EpochSampler.shard` (each takes every world-th key).
"""

from __future__ import annotations

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
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.length, self.world)) - self.skip)

    def __iter__(self) -> Iterator[Any]:
        keys = self.epoch_keys(self.epoch)[self.rank :: self.world]
        return iter(keys[self.skip :])


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
