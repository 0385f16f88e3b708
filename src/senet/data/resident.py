"""An in-memory dataset held on the training device (``data_on_device``): the whole image tensor, its labels and the
augmentation live there, so a batch is an index gather and a gather-based crop on the device, with no per-batch
host work and no copy of images.

The batches are those of the host path (`senet.data.TensorImages` read through a DataLoader), by construction: the
same `EpochBatches` keys (order and seeds), and the same random numbers, drawn on the host from each batch's seed
(`TensorImages.draws`) once per epoch for all its batches (a few kB per batch for crop and flip) and uploaded in one
copy. Only where the draws are applied differs. So with deterministic kernels a run computes on the CPU exactly what
the host path computes, and resumes the same way (tests/test_resident.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset

from .datasets import TensorImages, resize
from .sampling import Batch, BatchKey, EpochBatches
from .transforms import Draws, apply_augmentation

__all__ = ["ResidentImages"]


class ResidentImages(Dataset):
    """``source``'s images (resized once if it resizes), labels and augmentation on ``device``.

    Iterate `batches` (an epoch's worth, as a DataLoader would give them) rather than indexing it.
    """

    def __init__(self, source: TensorImages, device: torch.device | str) -> None:
        if not isinstance(source, TensorImages):
            raise TypeError(
                f"data_on_device holds in-memory datasets (fashion-mnist, cifar10/100, synthetic) only, not "
                f"{type(source).__name__}; train image folders with data_on_device=false"
            )
        self.source = source
        self.device = torch.device(device)
        # Resizing per image is independent of the batch: once for all gives the images the host path gives.
        self.images = resize(source.images, source.size).to(self.device)
        self.labels = source.labels.to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, key: BatchKey) -> Batch:
        return next(iter(self._epoch([key])))

    def batches(self, sampler: EpochBatches) -> _Batches:
        """An iterable over the batches of ``sampler``'s current epoch, on the device; iterate it again after
        ``sampler.set_epoch``, as one does a DataLoader."""
        return _Batches(self, sampler)

    def _epoch(self, keys: list[BatchKey]) -> Iterator[Batch]:
        if not keys:
            return
        shape = (1, *self.images.shape[1:])
        sizes = [len(k.indices) for k in keys]
        # Two uploads per epoch: every index of the epoch, and every random number of its augmentation.
        index = torch.tensor([i for k in keys for i in k.indices], dtype=torch.long).to(self.device, non_blocking=True)
        draws = Draws.cat([self.source.draws(k.seed, (n, *shape[1:])) for k, n in zip(keys, sizes, strict=True)])
        draws = draws.to(self.device)
        start = 0
        for n in sizes:
            idx = index[start : start + n]
            images = apply_augmentation(self.images[idx], draws.images(start, start + n), self.source.padding)
            yield Batch(images, self.labels[idx])
            start += n


class _Batches:
    """One epoch of `ResidentImages` batches in `EpochBatches` order (a DataLoader's stand-in)."""

    def __init__(self, data: ResidentImages, sampler: EpochBatches) -> None:
        self.data, self.sampler = data, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        return self.data._epoch(list(self.sampler))
