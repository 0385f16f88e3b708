"""Which images a process reads, in which order, with which randomness: a batch is a pure function of (run seed,
epoch, batch number), the same with any number of loader workers, across processes, and after a resume.

`EpochBatches` hands a DataLoader `BatchKey`s (a seed and the indices); a dataset returns the whole `Batch` for a
key, drawing its augmentation from the key's seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import NamedTuple

from torch import Tensor
from torch.utils.data import DistributedSampler, Sampler

__all__ = ["Batch", "BatchKey", "EpochBatches", "collate_batch", "derive_seed"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple such as (run seed, "order", epoch); distinct tuples give unrelated streams."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class BatchKey(NamedTuple):
    """What a loader asks a dataset for: the images at ``indices``, augmented with randomness from ``seed``."""

    seed: int
    indices: list[int]


class Batch(NamedTuple):
    """A batch of uint8 images (B, C, H, W), int64 labels (B,), and the files that could not be read (left out)."""

    images: Tensor
    labels: Tensor
    unreadable: tuple[str, ...] = ()


def collate_batch(batch: Batch) -> Batch:
    """DataLoader ``collate_fn``: our datasets return whole batches already."""
    return batch


class EpochBatches(Sampler[BatchKey]):
    """The batches one process reads in one epoch, as `BatchKey`s for a DataLoader's ``batch_sampler``.

    Training (``shuffle=True``): a DistributedSampler's share of a permutation drawn from (seed, epoch), cut into
    full batches (the last partial one is dropped, as BatchNorm needs more than one image). ``set_epoch(epoch,
    start)`` skips the first ``start`` batches, which is how a run resumes in the middle of an epoch.
    Evaluation (``shuffle=False``): rank r reads images r, r + world, r + 2·world, ... in batches, every image
    exactly once across ranks, with no padding.
    """

    def __init__(
        self, size: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be at least 1")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0
        if shuffle:
            # DistributedSampler seeds with seed + epoch; a hashed run seed keeps runs of nearby seeds unrelated.
            self._sampler = DistributedSampler(
                range(size), num_replicas=world, rank=rank, shuffle=True, seed=derive_seed(seed, "order") % 2**31
            )
            if len(self._sampler) < batch_size:
                raise ValueError(
                    f"{size} training images over {world} process(es) do not fill one batch of {batch_size}; "
                    f"set batch_size (--batch-size) to at most {len(self._sampler)} or add images"
                )

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        if self.shuffle:
            self._sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self.shuffle:
            return len(self._sampler) // self.batch_size - self.start
        return math.ceil(len(range(self.rank, self.size, self.world)) / self.batch_size)

    def __iter__(self) -> Iterator[BatchKey]:
        if self.shuffle:
            order = list(self._sampler)
            for b in range(self.start, len(order) // self.batch_size):
                chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield BatchKey(derive_seed(self.seed, "augment", self.epoch, self.rank, b), chunk)
        else:
            order = list(range(self.rank, self.size, self.world))
            for b in range(0, len(order), self.batch_size):
                yield BatchKey(0, order[b : b + self.batch_size])
