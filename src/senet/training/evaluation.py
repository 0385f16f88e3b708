"""Evaluation and prediction: top-1 / top-5 accuracy and loss over a test set, top-k labels of image files.

The paper reports single-crop top-1 and top-5 error (§5, Table 2); `evaluate` gives the accuracies (1 − error)
over every test image exactly once, also when several processes share the work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..data import (
    Batch,
    DataSpec,
    EpochBatches,
    Preprocess,
    ResidentImages,
    collate_batch,
    image_transforms,
    load_datasets,
    normalize,
    read_image,
)
from ..environment import check_parallelism, die_with_parent
from .distributed import Dist

__all__ = ["TTA", "EvalResult", "Inputs", "evaluate", "predict", "recorded_test_set"]

TTA = ("none", "flip")  # test-time augmentation of `evaluate`
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Inputs:
    """How batches reach the model: device, normalisation, memory layout and autocast precision."""

    device: torch.device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool = False
    amp: str = "none"

    def __post_init__(self) -> None:
        if self.amp == "fp16" and self.device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; on CPU use amp=bf16")

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) → normalised float32 on the device, in the chosen memory layout."""
        x = normalize(images.to(self.device, non_blocking=True), self.mean, self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.amp])


def check_readable(batch: Batch, skip: bool) -> int:
    """The number of unreadable files in ``batch`` (already left out of it), or ValueError naming the first."""
    if batch.unreadable and not skip:
        raise ValueError(
            f"unreadable image {batch.unreadable[0]}; remove or replace it, or pass --skip-bad-images to skip "
            "such files and count them"
        )
    if len(batch.labels) == 0:
        raise ValueError(f"every image of a batch is unreadable, e.g. {batch.unreadable[0]}")
    return len(batch.unreadable)


def loader(dataset: Dataset, sampler: EpochBatches, workers: int, pin: bool) -> Iterable[Batch]:
    """A DataLoader over our batch-returning datasets (`senet.data`), with at most as many worker processes as
    the machine has cores, each of which dies with this process (`senet.environment.die_with_parent`); a dataset
    held on the device (`ResidentImages`) gives its batches itself."""
    if isinstance(dataset, ResidentImages):
        return dataset.batches(sampler)
    if workers < 0:
        raise ValueError(f"workers={workers} must not be negative (0: load in this process)")
    check_parallelism(workers=workers)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        worker_init_fn=die_with_parent if workers > 0 else None,
    )


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy, top-1 and top-5 accuracy (fractions) over ``n`` images; ``skipped`` unreadable."""

    loss: float
    acc: float
    acc5: float
    n: int
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    inputs: Inputs,
    *,
    batch_size: int = 256,
    workers: int = 0,
    dist: Dist | None = None,
    skip_bad_images: bool = False,
    tta: str = "none",
) -> EvalResult:
    """Top-1 / top-5 accuracy and loss of ``model`` over every image of ``dataset`` exactly once; with several
    processes each takes every world-th image and the sums are combined.

    ``tta="flip"`` (test-time augmentation) classifies each image by the mean of the class probabilities of the image
    and of its mirror image (left-right); the loss is then the cross-entropy of those mean probabilities.
    """
    if tta not in TTA:
        raise ValueError(f"tta={tta!r}; choose from {', '.join(TTA)}")
    rank, world = (dist.rank, dist.world) if dist else (0, 1)
    sampler = EpochBatches(len(dataset), batch_size, shuffle=False, rank=rank, world=world)
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # loss sum, top-1, top-k, images, skipped
    for batch in loader(dataset, sampler, workers, inputs.device.type == "cuda"):
        totals[4] += check_readable(batch, skip_bad_images)
        x, y = inputs.prepare(batch.images), batch.labels.to(inputs.device)
        with inputs.autocast():
            logits = model(x)
            mirrored = model(x.flip(-1)) if tta == "flip" else None  # flip keeps the memory layout
        logits = logits.float()
        if mirrored is not None:  # log of the mean probability: the scores to rank and to take the loss of
            logits = torch.logaddexp(logits.log_softmax(1), mirrored.float().log_softmax(1)) - math.log(2)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # top-5, or every class of fewer
        totals[0] += F.cross_entropy(logits, y, reduction="sum").item()
        totals[1] += (top[:, 0] == y).sum().item()
        totals[2] += (top == y[:, None]).any(dim=1).sum().item()
        totals[3] += len(y)
    model.train(was_training)
    loss, top1, topk, n, skipped = dist.sum(totals.tolist()) if dist else totals.tolist()
    return EvalResult(loss / max(n, 1), top1 / max(n, 1), topk / max(n, 1), int(n), int(skipped))


def recorded_test_set(
    meta: dict[str, Any],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    download: bool = False,
    test_subset: int | None = None,
) -> tuple[Dataset, DataSpec]:
    """The test set that weights were evaluated on, prepared as their metadata records: their dataset (or
    ``dataset``), classes, input size, crop, interpolation and normalisation (the `DataSpec` holds the last), and
    by default (``test_subset=None``) the images the run was evaluated on (`recorded_test_subset`). The files are
    at ``data_dir``, else, for the weights' own dataset, where the run read them; another dataset's at its usual
    places (`senet.data.load_datasets`)."""
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise ValueError("the weights do not say which dataset they were trained on; pass the dataset (--dataset)")
    own = dataset == meta.get("dataset")  # the weights' own data: their classes, size, crop and normalisation
    if test_subset is None:
        test_subset = recorded_test_subset(meta, dataset)
    chans = meta.get("in_chans", 3)
    pre = {k: meta[k] for k in ("mean", "std", "crop_pct", "interpolation") if k in meta}
    norm = {k: pre.pop(k) for k in ("mean", "std") if k in pre and dataset != "imagefolder"}  # set once checked
    _, test, spec = load_datasets(
        dataset,
        data_dir=data_dir or (meta.get("recipe", {}).get("data_dir") if own else None),  # another's: its own places
        download=download,
        image_size=meta.get("image_size", 0),
        augment="none",
        test_subset=test_subset,
        in_chans=chans,
        classes=meta["classes"] if own and "classes" in meta else None,
        preprocess=pre,
    )
    if "in_chans" in meta and spec.in_chans != chans:  # image folders are read with the weights' channels; the
        # in-memory datasets have theirs (a plain state dict records none: its model is built for the data's)
        raise ValueError(f"the weights were trained on {chans}-channel images ({meta.get('dataset', 'unknown')}) and "
                         f"{dataset}'s have {spec.in_chans}; evaluate them on {chans}-channel data")  # fmt: skip
    if norm:
        spec = dataclasses.replace(spec, mean=tuple(norm["mean"]), std=tuple(norm["std"]))
    return test, spec


def recorded_test_subset(meta: dict[str, Any], dataset: str | None = None) -> int:
    """The test subset a run was evaluated on (its recipe's ``test_subset``; 0: all), where ``dataset`` is its own."""
    own = (dataset or meta.get("dataset")) == meta.get("dataset")
    return meta.get("recipe", {}).get("test_subset", 0) if own else 0


def load_images(paths: Sequence[str | os.PathLike], pre: Preprocess, in_chans: int) -> Tensor:
    """Image files as a uint8 batch prepared as the model's evaluation images were (`image_transforms`); a file
    that cannot be read is an error naming it (`senet.data.read_image`)."""
    transform = image_transforms(pre, train=False)
    return torch.stack([transform(read_image(p, in_chans)) for p in paths])


@torch.no_grad()
def predict(
    model: nn.Module, paths: Sequence[str | os.PathLike], meta: dict[str, Any], top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (label, probability) pairs for each image file, using the weights' metadata (`Preprocess`:
    size, crop, interpolation, mean, std; the class names)."""
    pre = Preprocess.from_metadata(meta)
    inputs = Inputs(next(model.parameters()).device, pre.mean, pre.std)
    probs = model.eval()(inputs.prepare(load_images(paths, pre, meta["in_chans"]))).softmax(dim=1)
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(meta["classes"][i], float(v)) for v, i in zip(vs.tolist(), ix.tolist(), strict=True)]
        for vs, ix in zip(values, indices, strict=True)
    ]
