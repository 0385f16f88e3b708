"""Transforms of uint8 image batches: the CIFAR augmentation done as one gather per batch, random erasing, the
preprocessing configuration of a model's weights (`Preprocess`) with the paper's ImageNet augmentation and
evaluation crop made from it (`image_transforms`), and the normalisation that runs on the training device."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..validate import MAX_IMAGE_SIDE, check_normalisation

__all__ = [
    "INTERPOLATIONS",
    "Draws",
    "PixelJitter",
    "Preprocess",
    "apply_augmentation",
    "draw_augmentation",
    "image_transforms",
    "normalize",
    "random_crop_flip",
    "random_erase",
]


class Draws(NamedTuple):
    """The random numbers of one batch's in-memory augmentation, drawn on the host from the batch's generator
    (`draw_augmentation`) and applied on any device (`apply_augmentation`), so the host and device paths compute the
    same images. Per image: ``crop`` (B, 3) = row offset, column offset, mirror (0/1); ``box`` (B, 5) = top, height,
    left, width, erase (0/1) of the erased rectangle; ``noise`` (B, C, H, W) uint8, its fill."""

    crop: Tensor | None = None
    box: Tensor | None = None
    noise: Tensor | None = None

    def to(self, device: torch.device | str) -> Draws:
        return Draws(*(None if t is None else t.to(device, non_blocking=True) for t in self))

    def images(self, start: int, stop: int) -> Draws:
        """The draws of images ``start:stop`` of the batch."""
        return Draws(*(None if t is None else t[start:stop] for t in self))

    @staticmethod
    def cat(parts: Sequence[Draws]) -> Draws:
        """The draws of several batches, one after the other."""
        return Draws(*(None if t[0] is None else torch.cat(t) for t in zip(*parts, strict=True)))


def draw_augmentation(generator: torch.Generator, shape: Sequence[int], padding: int | None, erasing: float) -> Draws:
    """Draw the augmentation of a batch of ``shape`` (B, C, H, W) from ``generator``: crop offsets and mirrors when
    ``padding`` is not None, then erasing rectangles and their fill when ``erasing`` > 0 (in this order: a batch's
    images are a function of its seed alone)."""
    b, c, h, w = shape
    crop = box = noise = None
    if padding is not None:
        dy = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b, 1), generator=generator)
        flip = torch.rand(b, 1, generator=generator) < 0.5
        crop = torch.cat([dy, dx, flip.long()], 1)
    if erasing > 0:
        area = torch.empty(b).uniform_(0.02, 0.33, generator=generator) * h * w
        aspect = torch.empty(b).uniform_(math.log(0.3), math.log(3.3), generator=generator).exp()
        eh = (area * aspect).sqrt().round().clamp(1, h).long()
        ew = (area / aspect).sqrt().round().clamp(1, w).long()
        y0 = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
        x0 = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
        erase = torch.rand(b, generator=generator) < erasing
        box = torch.stack([y0, eh, x0, ew, erase.long()], 1)
        noise = torch.randint(0, 256, (b, c, h, w), generator=generator, dtype=torch.uint8)
    return Draws(crop, box, noise)


def apply_augmentation(images: Tensor, draws: Draws, padding: int | None) -> Tensor:
    """The augmentation of `draw_augmentation` on a uint8 batch (B, C, H, W), on the batch's device: pad, crop
    and mirror in one gather, then random erasing. ``draws`` must be on the same device."""
    if draws.crop is not None:
        images = _crop_flip(images, padding or 0, draws.crop)
    if draws.box is not None:
        images = _erase(images, draws.box, draws.noise)
    return images


def _crop_flip(images: Tensor, padding: int, crop: Tensor) -> Tensor:
    b, _, h, w = images.shape
    if padding > 0:
        images = F.pad(images, (padding, padding, padding, padding))
    dev = images.device
    rows = crop[:, :1] + torch.arange(h, device=dev)  # (B, H)
    cols = crop[:, 1:2] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(crop[:, 2:] == 1, cols.flip(1), cols)
    channels = torch.arange(images.shape[1], device=dev)[None, :, None, None]
    batch = torch.arange(b, device=dev)[:, None, None, None]
    return images[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


def _erase(images: Tensor, box: Tensor, noise: Tensor) -> Tensor:
    _, _, h, w = images.shape
    y0, eh, x0, ew, erase = box.unbind(1)
    rows, cols = torch.arange(h, device=images.device)[None, :], torch.arange(w, device=images.device)[None, :]
    inside_r = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])  # (B, H)
    inside_c = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])  # (B, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :] & (erase == 1)[:, None, None])[:, None]  # (B, 1, H, W)
    return torch.where(mask, noise, images)


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """The CIFAR augmentation on a batch: zero-pad by ``padding``, crop back at a random offset per image, and
    mirror half of the images at random. One gather for the whole batch. (B, C, H, W) in and out."""
    draws = draw_augmentation(generator, images.shape, padding, 0.0).to(images.device)
    return apply_augmentation(images, draws, padding)


def random_erase(images: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Random erasing (Zhong et al., 2017) on a uint8 batch: with probability ``p`` per image, one rectangle of 2–33%
    of the area, aspect ratio 0.3–3.3, at a random place, is filled with random values. (B, C, H, W) in and out."""
    draws = draw_augmentation(generator, images.shape, None, p).to(images.device)
    return apply_augmentation(images, draws, None)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, C, H, W) on any device → float32 normalised by the dataset's per-channel mean and std."""
    from torchvision.transforms import v2

    # Standard strides: a one-channel batch with channels-last strides counts as contiguous, yet would send every
    # layer to slow kernels; .to(memory_format=...) lays it out anew.
    x = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    return v2.functional.normalize(x, list(mean), list(std))


class PixelJitter(torch.nn.Module):
    """Add one random offset in [-amount, amount] (0–255 scale) to each channel of a uint8 image: our reading of
    the "pixel jitter ±20" of the released SENet models' training."""

    def __init__(self, amount: int = 20) -> None:
        super().__init__()
        self.amount = amount

    def forward(self, img: Tensor) -> Tensor:
        offset = torch.randint(-self.amount, self.amount + 1, (img.shape[0], 1, 1))
        return (img.to(torch.int16) + offset).clamp_(0, 255).to(torch.uint8)


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    """How an image reaches a model: the preprocessing its weights were trained and evaluated with.

    Evaluation resizes the shorter side to ``input_size / crop_pct`` with ``interpolation`` and takes the centre
    ``input_size`` square (224 / 0.875 = 256, then 224: the paper's single-crop evaluation, §5); training takes a
    random crop of ``input_size`` (`image_transforms`). Both then scale to [0, 1] and normalise each channel with
    ``mean`` and ``std`` (`normalize`, on the device). Every senet weights file records these (`metadata`), every
    published weight carries them (`senet.weights.KnownWeights`), and train, eval, predict and export read them.
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        for key in ("mean", "std"):  # lists from JSON or YAML: tuples of floats, so that equal configs compare equal
            object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int):
            raise ValueError(f"input_size={self.input_size!r} must be a whole number of pixels")
        if not 1 <= self.input_size <= MAX_IMAGE_SIDE:
            raise ValueError(f"input_size={self.input_size!r} must be from 1 to {MAX_IMAGE_SIDE} pixels")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean={list(self.mean)} and std={list(self.std)}: give one value per channel in each")
        check_normalisation(self.mean, self.std, len(self.mean))  # finite; std above 0
        if isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float)) or not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct={self.crop_pct!r} must be in (0, 1]: the centre crop's share of the side")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={self.interpolation!r}; choose from {', '.join(INTERPOLATIONS)}")

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], **defaults: Any) -> Preprocess:
        """From a weights file's metadata (``image_size`` or ``input_size``, ``mean``, ``std``, ``crop_pct``,
        ``interpolation``), with ``defaults`` for what it does not record.

        Raises:
            ValueError: the metadata does not say the size, mean or std, and no default does.
        """
        values = {**defaults, **{k: meta[k] for k in ("mean", "std", "crop_pct", "interpolation") if k in meta}}
        size = meta.get("image_size", meta.get("input_size", defaults.get("input_size")))
        if isinstance(size, (list, tuple)):  # (C, H, W) as exported files record it
            size = size[-1]
        missing = [k for k, v in (("image_size", size), ("mean", values.get("mean")), ("std", values.get("std")))
                   if v is None]  # fmt: skip
        if missing:
            raise ValueError(f"the weights' metadata does not say their {', '.join(missing)}")
        return cls(**{**values, "input_size": int(size)})

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> Preprocess:
        """A model's own, as `senet.create_model` / `senet.load_model` record it in ``model.pretrained_cfg`` (timm's
        terms): the published weights', the weights file's, or the family's default (ValueError if it has none)."""
        cfg = getattr(model, "pretrained_cfg", None)
        if not cfg:
            raise ValueError(f"{type(model).__name__} records no preprocessing (pretrained_cfg); build it with "
                             "senet.create_model or load it with senet.load_model, or give a Preprocess")  # fmt: skip
        return cls.from_metadata({**cfg, "input_size": cfg["input_size"][-1]})

    def metadata(self) -> dict[str, Any]:
        """What a senet weights file records (the keys `from_metadata` reads)."""
        return {"image_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}  # fmt: skip


def image_transforms(pre: Preprocess, train: bool) -> torch.nn.Module:
    """Per-image transforms of uint8 tensors for ``pre``: the evaluation resize and centre crop, or the paper's
    training augmentation (§5: a random-size crop of 8–100% of the area and 3/4–4/3 aspect ratio, mirroring, a
    rotation of up to 10°, pixel jitter) at the same size and interpolation. Normalisation follows on the device."""
    from torchvision.transforms import v2

    mode = getattr(v2.InterpolationMode, pre.interpolation.upper())
    if train:
        return v2.Compose(
            [
                v2.RandomResizedCrop(
                    pre.input_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=mode, antialias=True
                ),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                PixelJitter(20),
            ]
        )
    resize = round(pre.input_size / pre.crop_pct)
    return v2.Compose([v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop(pre.input_size)])
